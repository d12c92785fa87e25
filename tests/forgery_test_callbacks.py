"""Callbacks the multi-process tests add on the command line (``+callbacks.x._target_=...``; the tests put
this folder on PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn


class FreezeBatchNorm(pl.Callback):
    """BatchNorm layers normalise with their running statistics during training, so that every sample's
    forward pass is independent of the rest of its batch: a 2-process run and a 1-process run over the same
    global batches then compute the same thing (SyncBatchNorm, which does it on GPUs, has no CPU backend)."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        for m in pl_module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


class DumpState(pl.Callback):
    """At the end of training every rank saves its state dict to ``<path>/rank<r>.pt``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.path / f"rank{trainer.global_rank}.pt")
