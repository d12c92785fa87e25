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
from forgery.errors import CheckpointError, ConfigError
from forgery.metrics.options import MetricOptions
from forgery.utils.memory import release_free_memory
from forgery.utils.seeding import step_rng
from forgery.utils.visualize import log_image, save_png

log = logging.getLogger(__name__)

__all__ = ["ForgeryModule", "build_module", "load_module", "CheckpointError", "check_finite", "check_task"]

# which config groups go together, for the messages of check_task
TASK_GROUPS = {
    "splicing": "model=mtse_net loss=mtse augmentation=flip|flip_crop|flip_patch|robustness|none with "
    "splicing data (data=splicing_synth|casia1|casia2|columbia|coverage|nist16|imd2020|dso1|folder|list)",
    "faces": "model=mat|mat_baseline loss=mat|mat_paper augmentation=agda|none with face data "
    "(data=faces_synth|ffpp|celebdf|dfdc|frames)",
}

CKPT_KEY = "forgery"


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
        self._vis: list[dict[str, torch.Tensor]] = []  # samples for the validation picture of this epoch
        # robustness perturbation of test images (forgery-eval's perturb=); no state, not in checkpoints
        self.perturbation: nn.Module | None = None
        # evaluation protocol (``metrics:`` config) and the bootstrap intervals of the last test epoch
        self.metric_options = MetricOptions()
        self.test_intervals: dict[str, tuple[float | None, float | None]] = {}

    def set_perturbation(self, perturbation: nn.Module | None) -> None:
        """Sets the perturbation applied to test images (:mod:`forgery.augment.perturb`); None removes it."""
        self.perturbation = perturbation

    def perturb_test_batch(self, batch: dict) -> None:
        """Replaces a test batch's ``image`` by its perturbed version (identity levels are skipped, so they
        give exactly the unperturbed metrics); training, validation and prediction batches are untouched."""
        p = self.perturbation
        if p is None or p.is_identity or self._trainer is None or not self.trainer.testing:
            return
        batch["image"] = p(batch["image"], batch.get("index"))

    def build_metrics(self, stage: str) -> nn.Module:
        """The metric collection of ``stage`` (``val`` | ``test``) under ``metric_options``."""
        raise NotImplementedError

    def set_metric_options(self, options: Any) -> None:
        """Sets the evaluation protocol (the ``metrics:`` config, a mapping or
        :class:`~forgery.metrics.options.MetricOptions`) and rebuilds ``val_metrics`` / ``test_metrics``."""
        self.metric_options = MetricOptions.from_config(options)
        self.val_metrics = self.build_metrics("val")
        self.test_metrics = self.build_metrics("test")

    def collect_intervals(self, stage: str, metrics: Any) -> None:
        """Bootstrap intervals of the test metrics into ``test_intervals`` (``test/<name>`` keys, for
        metrics.json); call after ``compute()`` and before ``reset()``. Other stages: nothing."""
        spec = self.metric_options.bootstrap
        if stage != "test":
            return
        values = metrics.intervals(spec.n, spec.seed, spec.level) if spec.n else {}
        self.test_intervals = {f"{stage}/{k}": v for k, v in values.items()}

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

    # ------------------------------------------------------------- validation / test lifecycle (written once)
    # A subclass implements eval_step (update the stage's metrics, log its loss, offer pictures with add_vis)
    # and render_vis (the validation picture grid); the hooks stage_values / before_compute / after_compute
    # add what is particular to a task. Metrics live in ``val_metrics`` / ``test_metrics``.

    vis_key: str = "val/predictions"  # the picture's name in image-capable loggers

    def stage_metrics(self, stage: str) -> Any:
        """The torchmetrics collection of ``stage`` (``val`` | ``test``)."""
        return getattr(self, f"{stage}_metrics")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.count_skipped(batch, "val"):
            self.eval_step(batch, "val", self.stage_metrics("val"))

    # test batches between two hand-backs of the freed heap to the OS (see release_free_memory)
    release_every: int = 50

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if self.count_skipped(batch, "test"):
            self.eval_step(batch, "test", self.stage_metrics("test"))
        if self.release_every and (batch_idx + 1) % self.release_every == 0:
            release_free_memory(collect=False)

    def eval_step(self, batch: dict, stage: str, metrics: Any) -> None:
        """One validation/test batch (the skipped samples are already counted)."""
        raise NotImplementedError

    def vis_room(self, stage: str) -> int:
        """How many more samples the validation picture takes (0 outside validation)."""
        if stage != "val":
            return 0
        shown = sum(len(next(iter(v.values()))) for v in self._vis)
        return max(0, int(self.hparams.get("num_vis", 0)) - shown)

    def add_vis(self, item: dict[str, torch.Tensor]) -> None:
        """Keeps samples (dict of (N, ...) tensors, detached here) for this validation epoch's picture."""
        self._vis.append({k: v.detach() for k, v in item.items()})

    def render_vis(self, items: dict[str, torch.Tensor]) -> torch.Tensor:
        """(3, H, W) picture of the kept samples (their tensors concatenated)."""
        raise NotImplementedError

    def before_compute(self, stage: str, metrics: Any) -> None:
        """Hook before the stage's metrics are computed."""

    def stage_values(self, stage: str, metrics: Any) -> dict[str, torch.Tensor]:
        """Hook: more values to log for the stage (after compute, before reset)."""
        return {}

    def after_compute(self, stage: str, metrics: Any) -> None:
        """Hook after logging, before the metrics are reset (e.g. keep the per-sample scores)."""

    def log_stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """Computes, logs (``stage/name``) and resets the stage's metrics, with skipped-sample counts and the
        test bootstrap intervals; returns what was logged."""
        metrics = self.stage_metrics(stage)
        if stage == "test":  # the test loop's freed batches, before the per-image metrics and intervals
            release_free_memory()
        self.before_compute(stage, metrics)
        values = {f"{stage}/{k}": v.float() for k, v in metrics.compute().items()}
        values |= self.stage_values(stage, metrics)
        values[f"{stage}/skipped"] = self.pop_skipped(stage)
        self.log_dict(values, sync_dist=False)
        self.collect_intervals(stage, metrics)
        self.after_compute(stage, metrics)
        metrics.reset()
        return values

    def train_epoch_values(self) -> dict[str, torch.Tensor]:
        """Hook: more values to log at each training epoch's end."""
        return {}

    def on_train_epoch_end(self) -> None:
        self.log_dict({"train/skipped": self.pop_skipped("train"), **self.train_epoch_values()})

    def on_validation_epoch_start(self) -> None:
        self._vis = []

    def on_validation_epoch_end(self) -> None:
        self.log_stage_metrics("val")
        if self._vis and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            cat = {k: torch.cat([v[k] for v in self._vis]) for k in self._vis[0]}
            grid = self.render_vis(cat)
            root = Path(self.trainer.default_root_dir) / "predictions"
            path = save_png(grid, root / f"val_epoch{self.current_epoch:03d}.png")
            log_image(self.loggers, self.vis_key, path, self.global_step)
        self._vis = []

    def on_test_epoch_end(self) -> None:
        self.log_stage_metrics("test")

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
    module_cls = hydra.utils.get_class(model_cfg["_target_"])
    for group, obj in (("loss", loss_obj), ("augmentation", aug_obj)):
        kind = getattr(obj, "kind", None)
        if kind is not None and kind != getattr(module_cls, "kind", kind):
            raise ConfigError(
                f"{group} {type(obj).__name__} is for {kind!r} models, but the model is "
                f"{module_cls.__name__} ({module_cls.kind!r}); these go together: "
                f"{TASK_GROUPS[module_cls.kind]}"
            )
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
    if not str(path).strip():
        raise FileNotFoundError("no checkpoint given: ckpt_path is empty (ckpt_path=<a .ckpt file>)")
    path = Path(path)
    if path.is_dir():
        hint = f"; did you mean {last}?" if (last := path / "checkpoints" / "last.ckpt").is_file() else ""
        raise FileNotFoundError(f"{path}: a folder, not a checkpoint file{hint}")
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
    # what train added: the size and data it was trained on, how the checkpoint was selected
    module.build_config = {**cfg, **module.build_config}
    return module


def check_task(module: Any, datamodule: Any, checkpoint: str | Path | None = None) -> None:
    """Fails before any work when the model and the data are of different tasks (splicing vs faces).

    Raises:
        CheckpointError: with ``checkpoint``, the checkpoint's model does not fit the data.
        ConfigError: otherwise (``forgery-train``): the chosen groups do not go together.
    """
    model_kind, data_kind = getattr(module, "kind", None), getattr(datamodule, "kind", None)
    if model_kind is None or data_kind is None or model_kind == data_kind:
        return
    data_name = getattr(datamodule, "name", "?")
    if checkpoint is not None:
        target = ((module.build_config or {}).get("model") or {}).get("_target_", "?")
        raise CheckpointError(
            f"{checkpoint}: is a checkpoint of a {model_kind!r} model ({target}), but data={data_name} is "
            f"{data_kind!r} data; use {model_kind} data ({TASK_GROUPS[model_kind]})"
        )
    raise ConfigError(
        f"a {model_kind!r} model ({type(module).__name__}) cannot train on data={data_name} ({data_kind!r} "
        f"data); these go together: {TASK_GROUPS[model_kind]}; or {TASK_GROUPS[data_kind]}"
    )
