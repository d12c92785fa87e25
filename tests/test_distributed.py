"""Multi-process evaluation (DDP on CPU with gloo) gives the same metrics.json as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_entrypoints import tiny_ckpt  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

# 7 test images: not divisible by 2 processes, so padding would count one twice
SYNTH = [
    "data.image_size=64",
    "data.synth.n_train=4",
    "data.synth.n_val=2",
    "data.synth.n_test=7",
    "data.eval_batch_size=2",
    "data.num_workers=0",
]


def _eval(ckpt: Path, root: Path, run: str, extra: list[str]) -> dict:
    out = root / run
    env = {**os.environ, "WANDB_MODE": "disabled", "FORGERY_QUIET": "1", "FORGERY_ROOT": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "forgery.eval",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={out}",
        f"paths.data_dir={root / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *SYNTH,
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_two_process_eval_equals_one_process(tiny_ckpt: Path, tmp_path: Path) -> None:  # noqa: F811
    one = _eval(tiny_ckpt, tmp_path, "one", ["trainer.devices=1"])
    two = _eval(tiny_ckpt, tmp_path, "two", ["trainer=ddp", "trainer.devices=2"])
    assert one["size"] == two["size"] == 7
    assert one["metrics"]["test/n_images"] == two["metrics"]["test/n_images"] == 7
    for key, value in one["metrics"].items():
        if key == "test/loss" or value is None:  # the loss is a mean of per-rank batch means
            continue
        assert two["metrics"][key] == pytest.approx(value, abs=1e-6), key
