"""Backend settings of a training run on a GPU that are not Trainer arguments (TF32 matmuls)."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from forgery.errors import ConfigError

__all__ = ["BackendFlags", "FLOAT32_MATMUL_PRECISIONS"]

log = logging.getLogger(__name__)

FLOAT32_MATMUL_PRECISIONS = ("highest", "high", "medium")


class BackendFlags(pl.Callback):
    """At setup, on a CUDA root device only: ``torch.set_float32_matmul_precision`` (``high``: float32
    matmuls and convolutions outside autocast may use TF32 tensor cores). CPU runs are left untouched.

    cuDNN autotuning is the Trainer's own ``benchmark`` flag (on in ``trainer=gpu``).
    """

    def __init__(self, float32_matmul_precision: str | None = "high") -> None:
        if float32_matmul_precision not in (None, *FLOAT32_MATMUL_PRECISIONS):
            raise ConfigError(
                f"BackendFlags: float32_matmul_precision must be one of {FLOAT32_MATMUL_PRECISIONS} or null, "
                f"got {float32_matmul_precision!r}"
            )
        self.float32_matmul_precision = float32_matmul_precision

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if self.float32_matmul_precision is None or trainer.strategy.root_device.type != "cuda":
            return
        torch.set_float32_matmul_precision(self.float32_matmul_precision)
        torch.backends.cudnn.allow_tf32 = self.float32_matmul_precision != "highest"
        log.info(
            "float32 matmul precision: %s (TF32 %s)",
            self.float32_matmul_precision,
            "off" if self.float32_matmul_precision == "highest" else "on",
        )
