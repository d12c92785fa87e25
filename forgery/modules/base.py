"""Base LightningModule: checkpoints carry the (resolved, plain) config that rebuilds the module."""

from __future__ import annotations

import logging
import pickle
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric, SumMetric

import forgery
from forgery.utils.seeding import step_rng

log = logging.getLogger(__name__)

__all__ = ["ForgeryModule", "build_module", "load_module", "CheckpointError", "check_finite"]

CKPT_KEY = "forgery"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not forgery's, the other model's, or not loadable safely."""


class ForgeryModule(pl.LightningModule):
    """Common base: ``kind`` names the task (``splicing`` | ``faces``); ``build_config`` is stored in every
    checkpoint so that ``forgery-eval`` / ``forgery-predict`` rebuild the exact model without ``model=``."""

    kind: str = "generic"

    def __init__(self) -> None:
        super().__init__()
        self.build_config: dict[str, Any] | None = None
        self.nonfinite_skipped = 0
        # samples skipped by data.on_error=skip, per stage (summed across processes); not in checkpoints
        self.skipped = nn.ModuleDict({f"{s}_samples": SumMetric() for s in ("train", "val", "test")})
        # validation/test loss as a sample-weighted mean over the whole split, reduced across processes
        self.eval_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})

    def count_skipped(self, batch: dict, stage: str) -> bool:
        """Counts the batch's samples skipped by ``data.on_error=skip`` (``n_skipped`` from
        ``collate_skipping``); False when none of the batch is left."""
        if "n_skipped" in batch:
            self.skipped[f"{stage}_samples"].update(batch["n_skipped"].float())
        return "image" in batch

    def pop_skipped(self, stage: str) -> torch.Tensor:
        """Skipped samples of ``stage`` since the last call (summed across processes), then reset."""
        value = self.skipped[f"{stage}_samples"].compute().float()
        self.skipped[f"{stage}_samples"].reset()
        return value

    def log_eval_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Logs ``<stage>/loss`` as the mean over every sample of the split (weighted by batch size, summed
        across DDP processes): the same value whatever the number of processes or the batch size."""
        metric = self.eval_loss[stage]
        metric.update(loss.detach().float(), weight=batch_size)
        self.log(f"{stage}/loss", metric, on_step=False, on_epoch=True)

    def register_input_norm(self, mean: Any = None, std: Any = None) -> None:
        """Non-persistent (1, C, 1, 1) buffers ``input_mean`` / ``input_std`` (identity when None)."""
        mean = torch.tensor(mean if mean is not None else [0.0, 0.0, 0.0], dtype=torch.float32)
        std = torch.tensor(std if std is not None else [1.0, 1.0, 1.0], dtype=torch.float32)
        self.register_buffer("input_mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", std.view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> the network's input space."""
        return (images - self.input_mean) / self.input_std

    def step_rng(self, stream: int) -> AbstractContextManager[None]:
        """Training randomness of this step (augmentation, dropout, AGDA) keyed by (seed, global step, rank,
        ``stream``): reproducible, different on each DDP rank, the same after a resume from any checkpoint."""
        return step_rng(self.global_step, self.global_rank, stream, self.device)

    optimizer_factory: Any = None  # partial optimizer, set by subclasses (``_partial_: true`` in the config)
    scheduler_factory: Any = None  # partial LR scheduler or None

    def configure_optimizers(self) -> dict[str, Any]:
        """The configured optimizer over trainable parameters, and the scheduler at ``scheduler_interval``."""
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def configure_model(self) -> None:
        """``model.compile=true``: compiles ``net`` in place (``nn.Module.compile``: parameter names and
        checkpoints unchanged), once, after ``setup`` (SyncBatchNorm conversion) and before DDP wrapping."""
        net = getattr(self, "net", None)
        if self.hparams.get("compile") and net is not None and not getattr(self, "_net_compiled", False):
            net.compile(**dict(self.hparams.get("compile_options") or {}))
            self._net_compiled = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = {
            "kind": self.kind,
            "version": forgery.__version__,
            "config": self.build_config,
        }


def check_finite(module: pl.LightningModule, loss: torch.Tensor, sample_ids: list, stage: str) -> bool:
    """True when ``loss`` is finite. Otherwise raise (``hparams.on_nonfinite == "raise"``, the default) with
    the step and the batch's sample ids, or count the batch as skipped and return False (``"skip"``)."""
    if torch.isfinite(loss):
        return True
    message = (
        f"non-finite {stage} loss ({loss.item()}) at global step {module.global_step}, epoch "
        f"{module.current_epoch}; batch sample ids: {sample_ids}"
    )
    if module.hparams.get("on_nonfinite", "raise") != "skip":
        raise FloatingPointError(message + " (model.on_nonfinite=skip skips such batches and counts them)")
    module.nonfinite_skipped += 1
    module.log("train/nonfinite_skipped", float(module.nonfinite_skipped), reduce_fx="max")
    log.warning("skipping batch: %s", message)
    return False


def _plain(cfg: Any) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def build_module(model: Any, loss: Any, augmentation: Any = None) -> ForgeryModule:
    """Instantiates the LightningModule of ``model`` with the loss and augmentation of their own groups."""
    model_cfg, loss_cfg, aug_cfg = _plain(model), _plain(loss), _plain(augmentation)
    loss_obj = hydra.utils.instantiate(loss_cfg)
    aug_obj = hydra.utils.instantiate(aug_cfg) if aug_cfg else None
    module = hydra.utils.instantiate(model_cfg, loss=loss_obj, augmentation=aug_obj, _convert_="all")
    if not isinstance(module, ForgeryModule):
        raise TypeError(f"model config builds {type(module).__name__}, not a ForgeryModule")
    module.build_config = {"model": model_cfg, "loss": loss_cfg, "augmentation": aug_cfg}
    return module


def load_module(path: str | Path, kind: str | None = None, map_location: str = "cpu") -> ForgeryModule:
    """Loads a forgery checkpoint with ``weights_only=True`` and rebuilds its module.

    Raises:
        CheckpointError: the file is not a safe-loadable forgery checkpoint, or it is of another ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as err:
        raise CheckpointError(
            f"{path}: cannot be loaded with weights_only=True (a pickled module or object, or a truncated "
            f"file?): {str(err).splitlines()[0]}"
        ) from err
    info = ckpt.get(CKPT_KEY) if isinstance(ckpt, dict) else None
    if not info or not info.get("config"):
        raise CheckpointError(
            f"{path}: not a forgery checkpoint (no '{CKPT_KEY}' entry with the model config)"
        )
    if kind is not None and info["kind"] != kind:
        target = info["config"]["model"].get("_target_", "?")
        raise CheckpointError(
            f"{path}: is a checkpoint of a {info['kind']!r} model ({target}), but this command needs a "
            f"{kind!r} model"
        )
    cfg = info["config"]
    model_cfg = dict(cfg["model"])
    if model_cfg.get("init_from"):
        model_cfg["init_from"] = None  # the checkpoint's own weights follow; the init file may be gone
    module = build_module(model_cfg, cfg["loss"], cfg.get("augmentation"))
    module.load_state_dict(ckpt["state_dict"])
    return module
