"""Crash-safe checkpoint files and a resume hint on interruption."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "ResumeHint"]

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to ``<path>.tmp`` and renames it into place: a kill during the write
    (SIGKILL, power loss) leaves the previous ``last.ckpt`` intact instead of a truncated file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class ResumeHint(pl.Callback):
    """On SIGTERM / Ctrl-C: stop after the current batch, save ``last.ckpt``, and say how to resume."""

    def __init__(self) -> None:
        self._saved = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if getattr(trainer, "received_sigterm", False) and not self._saved:
            self._save(trainer)
            trainer.should_stop = True

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit" and not self._saved:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        self._saved = True
        log.warning(
            "interrupted at step %d: saved %s. Resume with the same overrides plus "
            "hydra.run.dir=%s ckpt_path=last",
            trainer.global_step,
            path,
            trainer.default_root_dir,
        )
