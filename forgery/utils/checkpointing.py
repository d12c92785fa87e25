"""Crash-safe checkpoint files and a resume hint on interruption."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from forgery.utils.io import atomic_path

__all__ = ["AtomicCheckpointIO", "ResumeHint"]

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to ``<path>.tmp`` and renames it into place: a kill during the write
    (SIGKILL, power loss) leaves the previous ``last.ckpt`` intact instead of a truncated file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class ResumeHint(pl.Callback):
    """On SIGTERM / Ctrl-C: stop after the current training batch, save ``last.ckpt``, and say how to resume.

    Ctrl-C is caught by a SIGINT handler installed for the fit (main thread only) and turned into a
    KeyboardInterrupt at the next training batch's end, where the state is whole; a second Ctrl-C
    interrupts at once (Python's default).
    """

    def __init__(self) -> None:
        self._saved = False
        self._interrupted = False
        self._previous: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._interrupted = True
        self._restore()
        log.warning("Ctrl-C: stopping after the current training batch (Ctrl-C again to abort at once)")

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._saved or not (self._interrupted or getattr(trainer, "received_sigterm", False)):
            return
        self._save(trainer)
        if self._interrupted:
            raise KeyboardInterrupt  # Lightning's graceful shutdown; the checkpoint is already written
        trainer.should_stop = True

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        if not interrupted or trainer.state.fn != "fit" or self._saved:
            return
        if trainer.training:  # between two training batches: the state is whole, save it
            self._save(trainer)
            return
        # during validation or sanity checking: keep the last whole checkpoint (written at the last epoch end)
        path = self._path(trainer)
        if path.is_file():
            log.warning(
                "interrupted during validation at step %d: %s is the latest checkpoint. Resume with the same "
                "overrides plus hydra.run.dir=%s ckpt_path=last",
                trainer.global_step,
                path,
                trainer.default_root_dir,
            )
        else:
            log.warning("interrupted before the first checkpoint was written: nothing to resume")

    @staticmethod
    def _path(trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def _save(self, trainer: pl.Trainer) -> None:
        path = self._path(trainer)
        trainer.save_checkpoint(path)
        self._saved = True
        log.warning(
            "interrupted at step %d: saved %s. Resume with the same overrides plus "
            "hydra.run.dir=%s ckpt_path=last",
            trainer.global_step,
            path,
            trainer.default_root_dir,
        )
