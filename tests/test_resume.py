"""Checkpoints are written atomically; ckpt_path=last resumes in the same run directory."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import open_dict

from forgery.cli.train import train
from forgery.utils.checkpointing import AtomicCheckpointIO
from tests.conftest import SMALL_FACES, SMALL_SPLICING


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    # the previous checkpoint is still whole
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))


def test_resume_from_last_continues_the_epoch_count(make_cfg) -> None:
    small = [*SMALL_SPLICING, "model.net.width=8", "trainer.precision=32-true", "test=false"]
    cfg = make_cfg("train", ["experiment=mtse_synth", "trainer.max_epochs=1", *small])
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["epoch"] == 0 and not list(last.parent.glob("*.tmp"))
    cfg2 = make_cfg("train", ["experiment=mtse_synth", "trainer.max_epochs=2", "ckpt_path=last", *small])
    _, objects = train(cfg2)
    second = torch.load(last, weights_only=True)
    assert second["epoch"] == 1 and second["global_step"] == 2 * first["global_step"]
    assert objects["trainer"].current_epoch == 2


# --- exact resume: K steps, stop, resume from last.ckpt, continue to 2K == an uninterrupted 2K-step run ---

SPLICING_RESUME = [
    "experiment=mtse_synth",
    *SMALL_SPLICING,
    "model.net.width=8",
    "augmentation=flip_crop",  # random draws every step: they must be the same after the resume
]
FACES_RESUME = [
    "experiment=mat_synth",
    *SMALL_FACES,
    "model.net.backbone=tf_efficientnet_b0",
    "data.batch_size=4",  # several steps per epoch
]
COMMON = ["trainer.precision=32-true", "trainer.deterministic=true", "test=false", "trainer.max_epochs=-1"]
EVERY_STEP = [
    "callbacks.last_checkpoint.every_n_epochs=null",
    "+callbacks.last_checkpoint.every_n_train_steps=1",
]


def _state(objects: dict) -> dict[str, torch.Tensor]:
    """Flat view of everything that must match: weights, buffers (BN stats, RIL centers, alpha), optimizer
    moments and step counts, scheduler counters, and the trainer's progress."""
    trainer = objects["trainer"]
    flat = {f"model.{k}": v.detach().clone() for k, v in objects["model"].state_dict().items()}
    opt = trainer.optimizers[0].state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            flat[f"optim.{pid}.{k}"] = torch.as_tensor(v).clone()
    for i, cfg in enumerate(trainer.lr_scheduler_configs):
        for k, v in cfg.scheduler.state_dict().items():
            if isinstance(v, (int, float)):
                flat[f"sched{i}.{k}"] = torch.tensor(float(v))
    flat["global_step"] = torch.tensor(trainer.global_step)
    return flat


def _run(make_cfg, overrides: list[str], out: Path) -> dict[str, torch.Tensor]:
    cfg = make_cfg("train", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    _, objects = train(cfg)
    return _state(objects)


def _resume_equals_uninterrupted(make_cfg, tmp_path: Path, base: list[str], k: int, first: list[str]) -> None:
    full = _run(make_cfg, [*base, *COMMON, f"trainer.max_steps={2 * k}"], tmp_path / "full")
    _run(make_cfg, [*base, *COMMON, *first], tmp_path / "cut")
    ckpt = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == k
    resumed = _run(
        make_cfg, [*base, *COMMON, f"trainer.max_steps={2 * k}", "ckpt_path=last"], tmp_path / "cut"
    )
    assert resumed.keys() == full.keys()
    assert int(resumed["global_step"]) == 2 * k
    different = [name for name in full if not torch.equal(full[name], resumed[name])]
    assert not different, f"{len(different)} tensors differ after the resume, e.g. {different[:5]}"


@pytest.mark.parametrize("where", ["mid_epoch", "epoch_boundary"])
def test_mtse_resume_is_exact(make_cfg, tmp_path: Path, where: str) -> None:
    # 16 training images / batch 4 = 4 steps per epoch
    if where == "mid_epoch":
        first, k = [*EVERY_STEP, "trainer.max_steps=3"], 3
    else:
        first, k = ["trainer.max_steps=4"], 4
    _resume_equals_uninterrupted(make_cfg, tmp_path, SPLICING_RESUME, k, first)


@pytest.mark.parametrize("where", ["mid_epoch", "epoch_boundary"])
def test_mat_resume_is_exact(make_cfg, tmp_path: Path, where: str) -> None:
    steps = _faces_steps_per_epoch(make_cfg)
    if where == "mid_epoch":
        first, k = [*EVERY_STEP, f"trainer.max_steps={steps + 1}"], steps + 1  # crosses the alpha decay
    else:
        first, k = [f"trainer.max_steps={steps}"], steps
    _resume_equals_uninterrupted(make_cfg, tmp_path, FACES_RESUME, k, first)


def _faces_steps_per_epoch(make_cfg) -> int:
    cfg = make_cfg("train", [*FACES_RESUME, *COMMON])
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    return len(dm.datasets["train"]) // cfg.data.batch_size


# --- SIGTERM / Ctrl-C: a usable last.ckpt, a message on how to resume, and ckpt_path=last resumes ---


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])  # SIGINT = Ctrl-C
def test_interrupt_leaves_a_usable_last_ckpt_and_says_how_to_resume(
    tmp_path: Path, make_cfg, signame: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run_sigterm"
    env = {**os.environ, "WANDB_MODE": "disabled", "FORGERY_ROOT": str(tmp_path)}
    base = [*SMALL_SPLICING, "model.net.width=8", "trainer.precision=32-true", "test=false"]
    cmd = [
        sys.executable,
        "-m",
        "forgery.cli.train",
        "experiment=mtse_synth",
        f"hydra.run.dir={out}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "~callbacks.rich_progress_bar",
        "logger=csv",
        "trainer.max_epochs=10000",
        "trainer.max_time=null",
        *base,
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if not last.exists():
        proc.kill()
        raise AssertionError("no epoch finished in time: " + proc.communicate()[0][-3000:])
    time.sleep(1.0)  # somewhere in a later epoch
    proc.send_signal(getattr(signal, signame))
    output, _ = proc.communicate(timeout=120)
    assert "Resume with the same overrides plus" in output and "ckpt_path=last" in output, output[-3000:]
    assert not list(last.parent.glob("*.tmp"))
    saved = torch.load(last, weights_only=True)  # whole and loadable safely
    step = saved["global_step"]
    assert step >= 4

    cfg = make_cfg(
        "train", ["experiment=mtse_synth", *base, f"trainer.max_steps={step + 2}", "ckpt_path=last"]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    _, objects = train(cfg)
    assert objects["trainer"].global_step == step + 2
