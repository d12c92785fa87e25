"""Checkpoints are written atomically; ckpt_path=last resumes in the same run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forgery.train import train
from forgery.utils.checkpointing import AtomicCheckpointIO
from tests.conftest import SMALL_SPLICING


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
