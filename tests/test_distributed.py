"""Multi-process evaluation (DDP on CPU with gloo) gives the same metrics.json as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL_FACES
from tests.test_entrypoints import tiny_ckpt  # noqa: F401  (fixture)
from tests.test_faces_real import faces_ckpt  # noqa: F401  (fixture)

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


# MAT on faces_synth: 3 identities x (3 real + 2 fake frames) = 15 test frames in 6 videos, so frames of one
# video land on both ranks and the frame count is odd
FACES = [
    "data=faces_synth",
    "data.image_size=64",
    "data.synth.n_train=2",
    "data.synth.n_val=2",
    "data.synth.n_test=3",
    "data.synth.real_frames=3",
    "data.synth.fake_frames=2",
    "data.eval_batch_size=2",
    "data.num_workers=0",
]


def _eval(ckpt: Path, root: Path, run: str, extra: list[str], data: list[str] = SYNTH) -> dict:
    out = root / run
    env = {**os.environ, "WANDB_MODE": "disabled", "FORGERY_QUIET": "1", "FORGERY_ROOT": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "forgery.cli.eval",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={out}",
        f"paths.data_dir={root / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *data,
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
        if value is None:
            continue
        assert two["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # bootstrap intervals: the per-sample data gathered from both ranks, resampled in a canonical order
    assert one["intervals"] and one["intervals"].keys() == two["intervals"].keys()
    for key, value in one["intervals"].items():
        assert two["intervals"][key] == pytest.approx(value, abs=1e-6), key


def test_two_process_frame_and_video_metrics_equal_one_process(faces_ckpt: Path, tmp_path: Path) -> None:  # noqa: F811
    import torch

    # an untrained head gives nearly equal scores, whose order float rounding could flip: spread them
    ckpt = torch.load(faces_ckpt, weights_only=True)
    ckpt["state_dict"]["net.classifier.2.weight"] *= 200.0
    spread = tmp_path / "mat_spread.ckpt"
    torch.save(ckpt, spread)
    one = _eval(spread, tmp_path, "one", ["trainer.devices=1"], FACES)
    two = _eval(spread, tmp_path, "two", ["trainer=ddp", "trainer.devices=2"], FACES)
    assert one["metrics"]["test/n_frames"] == two["metrics"]["test/n_frames"] == 15
    assert one["metrics"]["test/n_videos"] == two["metrics"]["test/n_videos"] == 6
    for key, value in one["metrics"].items():
        if value is None:
            continue
        assert two["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # bootstrap intervals: the per-sample data gathered from both ranks, resampled in a canonical order
    assert one["intervals"] and one["intervals"].keys() == two["intervals"].keys()
    for key, value in one["intervals"].items():
        assert two["intervals"][key] == pytest.approx(value, abs=1e-6), key


# --- training: RIL centers under 2-process DDP equal a 1-process run over the same global batches ---

# both models: 3 SGD steps (Adam turns float-rounding-sized gradient differences into whole steps), BatchNorm
# frozen (SyncBatchNorm has no CPU backend), every rank's final state dumped
COMMON_DDP = [
    "trainer.precision=32-true",
    "model.optimizer._target_=torch.optim.SGD",
    "model.optimizer.lr=0.01",
    "trainer.max_steps=3",
    "+trainer.limit_val_batches=0",
    "test=false",
    "logger=csv",
    "callbacks=none",
    "+callbacks.freeze_bn._target_=forgery_test_callbacks.FreezeBatchNorm",
    "+callbacks.dump._target_=forgery_test_callbacks.DumpState",
]

MAT_TINY = [
    "experiment=mat_synth",
    *SMALL_FACES,  # its batch sizes are overridden per run below
    "model.net.backbone=tf_efficientnet_b0",
    "model.net.head_dropout=0",  # dropout masks are drawn per rank: off, so both runs compute the same
    "model.net.dropout=0",
    "model.net.drop_path_rate=0",  # so is stochastic depth (per sample)
    "augmentation=none",  # AGDA draws per rank likewise (tests/test_seeding.py checks those)
    "~model.optimizer.betas",
    *COMMON_DDP,
]

MTSE_TINY = [
    "experiment=mtse_synth",
    "data.image_size=64",
    "data.synth.n_train=16",
    "data.synth.n_val=4",
    "data.synth.n_test=4",
    "data.num_workers=0",
    "model.net.width=8",
    "augmentation=none",  # flips are drawn per rank
    *COMMON_DDP,
]


def _train(root: Path, run: str, base: list[str], extra: list[str]) -> dict[str, dict]:
    out = root / run
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "FORGERY_QUIET": "1",
        "FORGERY_ROOT": str(root),
        "PYTHONPATH": os.pathsep.join([str(repo / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "forgery.cli.train",
        f"hydra.run.dir={out}",
        f"paths.data_dir={root / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        *base,
        f"+callbacks.dump.path={out / 'state'}",
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    return {p.stem: torch.load(p, weights_only=True) for p in sorted((out / "state").glob("rank*.pt"))}


def test_two_process_training_centers_equal_one_process(tmp_path: Path) -> None:
    import torch

    one = _train(tmp_path, "one", MAT_TINY, ["trainer.devices=1", "data.batch_size=4"])
    two = _train(tmp_path, "two", MAT_TINY, ["trainer=ddp", "trainer.devices=2", "data.batch_size=2"])
    assert set(one) == {"rank0"} and set(two) == {"rank0", "rank1"}
    ref = one["rank0"]
    assert int(ref["loss.ril.decayed_epochs"]) == int(two["rank0"]["loss.ril.decayed_epochs"])
    assert bool(ref["loss.ril.centers"].abs().sum() > 0)
    for rank in ("rank0", "rank1"):
        got = two[rank]
        # both ranks hold the same centers, equal to the 1-process run's (<= 1e-6)
        torch.testing.assert_close(got["loss.ril.centers"], two["rank0"]["loss.ril.centers"], rtol=0, atol=0)
        torch.testing.assert_close(got["loss.ril.centers"], ref["loss.ril.centers"], rtol=0, atol=1e-6)
        # and so does everything the steps changed (gradients were reduced the same way)
        for name, value in ref.items():
            if value.is_floating_point():
                torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, equal_nan=True, msg=name)


def test_two_process_mtse_training_equals_one_process(tmp_path: Path) -> None:
    import torch

    one = _train(tmp_path, "one", MTSE_TINY, ["trainer.devices=1", "data.batch_size=4"])
    two = _train(tmp_path, "two", MTSE_TINY, ["trainer=ddp", "trainer.devices=2", "data.batch_size=2"])
    assert set(two) == {"rank0", "rank1"}
    for name, value in one["rank0"].items():
        if value.is_floating_point():
            torch.testing.assert_close(two["rank1"][name], two["rank0"][name], rtol=0, atol=0, msg=name)
            torch.testing.assert_close(two["rank0"][name], value, rtol=0, atol=1e-6, msg=name)
