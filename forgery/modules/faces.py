"""FaceForgeryModule: trains and evaluates MAT (multi-attentional deepfake detection) with AGDA."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.errors import ConfigError
from forgery.metrics import DetectionMetrics
from forgery.models.layers import fast_depthwise_grads, out_of_place_silu
from forgery.modules.base import ForgeryModule, check_finite
from forgery.utils.visualize import attention_grid

__all__ = ["FaceForgeryModule", "mat_channels_last"]

log = logging.getLogger(__name__)


def mat_channels_last(setting: bool | str, device: str, precision: str) -> bool:
    """The memory layout MAT runs in. ``"auto"``: channels-last on every device and precision. An earlier
    rule ran bf16 autocast on a CPU contiguous; since the channels-last-aware texture enhancement the full
    bench (``experiments/benchmarks/full-cpu.md``) measures channels-last faster there too (2 x 380 training
    step: 3.04 s vs 4.75 s under bf16, 2.82 s vs 4.71 s in fp32). GPUs are not measured yet."""
    del device, precision  # kept so that a later measured exception has its inputs
    if setting == "auto":
        return True
    return bool(setting)


class FaceForgeryModule(ForgeryModule):
    """Lightning wrapper around MAT, its loss (CE + RIL + AGDA terms) and AGDA.

    Args:
        net: a MAT network (``forward(images) -> MATOutput``); baseline mode gives a plain classifier.
        loss: :class:`~forgery.losses.mat.MATLoss`.
        optimizer: partial optimizer; scheduler: optional partial LR scheduler (``scheduler_interval``).
        augmentation: :class:`~forgery.augment.agda.AGDA` or None (no AGDA pass).
        agda_center_update: also update the RIL centers on the AGDA pass (as the official code does).
        input_mean, input_std: input normalization (MAT: 0.5 / 0.5).
        threshold: frame decision threshold of the metrics.
        init_from: a forgery checkpoint whose matching weights initialise the network (stage 2 from stage 1).
        sync_batchnorm: convert BatchNorm layers to SyncBatchNorm under DDP (timm-aware).
        num_vis: faces in the validation picture grid.
        on_nonfinite: ``raise`` on a non-finite training loss (naming the step and the batch's video keys) or
            ``skip`` the batch and count it (``train/nonfinite_skipped``).
        channels_last: run the network in channels-last memory format: ``True``, ``False`` or ``"auto"``
            (:func:`mat_channels_last`: channels-last everywhere, as measured in
            ``experiments/benchmarks``), decided when the trainer sets the module up.
        compile: ``torch.compile`` the network (in place, state-dict names unchanged) when the trainer sets
            the model up.
        compile_options: ``torch.compile``'s keyword arguments (``backend``, ``mode``), or None.

    Face crops skipped by ``data.on_error=skip`` are counted per stage (``<stage>/skipped``; a batch left
    empty is skipped), and the datamodule's listed-but-uncropped videos (``dropped_videos``) are logged as
    ``<stage>/<reason>_videos``, so both reach ``metrics.json``.
    """

    kind = "faces"

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        augmentation: nn.Module | None = None,
        agda_center_update: bool = True,
        input_mean: Sequence[float] = (0.5, 0.5, 0.5),
        input_std: Sequence[float] = (0.5, 0.5, 0.5),
        threshold: float = 0.5,
        init_from: str | None = None,
        sync_batchnorm: bool = False,
        num_vis: int = 8,
        on_nonfinite: str = "raise",
        channels_last: bool | str = False,
        compile: bool = False,
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "augmentation"], logger=False
        )
        if channels_last not in (True, False, "auto"):
            raise ConfigError(f"channels_last must be true, false or auto, got {channels_last!r}")
        self.net = net
        # training speed, same math: in-place SiLU copies its input for autograd; oneDNN's 5x5 depthwise
        # weight gradient is very slow on small CPU maps (forgery.models.layers.depthwise)
        out_of_place_silu(self.net)
        fast_depthwise_grads(self.net)
        self.uses_channels_last = False  # the layout in use; "auto" is resolved in setup()
        self._set_layout(mat_channels_last(channels_last, "cpu", "32-true"))
        self.loss = loss
        self.augmentation = augmentation
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.register_input_norm(input_mean, input_std)
        self._fit_ril_to_net()
        self.test_scores: dict[str, Tensor | None] | None = None  # the last test epoch's frames
        self.val_metrics = self.build_metrics("val")
        self.test_metrics = self.build_metrics("test")
        # (frame, video) thresholds maximising balanced accuracy on validation, carried to test: saved in
        # checkpoints, so forgery-eval reports at them too (NaN until a validation epoch has run)
        self.register_buffer("val_thresholds", torch.full((2,), float("nan"), dtype=torch.float64))
        self._register_load_state_dict_pre_hook(_default_val_thresholds)
        if init_from:
            self.init_from_checkpoint(init_from)

    def build_metrics(self, stage: str) -> DetectionMetrics:
        """Detection metrics under ``metric_options`` (video aggregation, ECE bins)."""
        opts = self.metric_options
        return DetectionMetrics(
            threshold=self.hparams.threshold,
            aggregation=opts.video_aggregation,
            topk=opts.video_topk,
            ece_bins=opts.ece_bins,
        )

    def _fit_ril_to_net(self) -> None:
        """Sizes the RIL centers (M, C) to the network's maps and shallow channels (backbone-dependent)."""
        ril = getattr(self.loss, "ril", None)
        shape = (getattr(self.net, "num_attentions", None), getattr(self.net, "ril_channels", None))
        if ril is None or None in shape or tuple(ril.centers.shape) == shape:
            return
        if bool(ril.centers.any()):
            raise ConfigError(
                f"RIL centers of shape {tuple(ril.centers.shape)} already trained; the net needs {shape}"
            )
        log.debug(  # every build of a non-B4 MAT does this (the loss config is sized for B4): not news
            "RIL centers resized from %s to %s for %s",
            tuple(ril.centers.shape),
            shape,
            type(self.net).__name__,
        )
        ril.centers = torch.zeros(shape, dtype=ril.centers.dtype)

    def init_from_checkpoint(self, path: str | Path) -> None:
        """Loads the matching weights (same name and shape) of another forgery checkpoint into ``net``."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("net.") :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
        if not state:
            raise ValueError(f"{path}: no 'net.' weights to initialise from")
        loaded, skipped = self.net.load_matching(state)
        log.info("init_from %s: %d tensors loaded, %d skipped", path, len(loaded), len(skipped))

    def setup(self, stage: str) -> None:
        if self.hparams.sync_batchnorm and self._trainer is not None and self.trainer.world_size > 1:
            self.net = self.net.convert_sync_batchnorm()
        if self._trainer is not None:
            device = self.trainer.strategy.root_device.type
            self._set_layout(
                mat_channels_last(self.hparams.channels_last, device, str(self.trainer.precision))
            )

    def _set_layout(self, channels_last: bool) -> None:
        if channels_last != self.uses_channels_last:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            self.net = self.net.to(memory_format=fmt)
            self.uses_channels_last = channels_last

    def forward(self, images: Tensor):
        """images (B, 3, H, W) in [0, 1] -> ``MATOutput``."""
        return self._net_forward(self.normalize(images))

    def _net_forward(self, x: Tensor):
        """The network on normalised images, in the module's memory format."""
        if self.uses_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "image" in batch:
            self.perturb_test_batch(batch)  # forgery-eval perturb=
        return batch

    def _dropped_videos(self, stage: str) -> dict[str, Tensor]:
        """``<stage>/<reason>_videos``: the datamodule's listed videos without crops (none without one)."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        dropped = getattr(dm, "dropped_videos", None)
        if not isinstance(dropped, Mapping) or stage not in dropped:
            return {}
        return {f"{stage}/{r}_videos": torch.tensor(float(len(k))) for r, k in dropped[stage].items()}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not self.count_skipped(batch, "train"):
            return None
        x = self.normalize(batch["image"])
        labels = batch["label"]
        with self.step_rng(stream=2):  # head dropout and AGDA draws: per step and rank, exact on resume
            out = self._net_forward(x)
            out_agda = selected = None
            if self.augmentation is not None and out.attention_maps is not None:
                mixed, selected, _ = self.augmentation(x, out.attention_maps.detach())
                out_agda = self._net_forward(mixed)
            terms = self.loss(
                out, labels, out_agda, selected, update_centers_on_agda=self.hparams.agda_center_update
            )
        if not check_finite(self, terms["loss"], list(batch.get("key", [])), "train"):
            return None
        bs = labels.shape[0]
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/loss_{k}": v for k, v in terms.items() if k != "loss"}, batch_size=bs)
        self.log("train/acc", (out.logits.argmax(1) == labels).float().mean(), batch_size=bs)
        return terms["loss"]

    def on_train_epoch_start(self) -> None:
        # alpha *= 0.9 per finished epoch, applied at the next epoch's start so that a checkpoint saved at
        # any point (validation, Ctrl-C, mid-epoch) resumes with the right value
        if hasattr(self.loss, "sync_epoch"):
            self.loss.sync_epoch(self.current_epoch)

    vis_key = "val/attention"

    def eval_step(self, batch: dict, stage: str, metrics: DetectionMetrics) -> None:
        out = self(batch["image"])
        probs = out.logits.float().softmax(dim=1)[:, 1]
        metrics.update(probs, batch["label"], batch["video_id"])
        loss = F.cross_entropy(out.logits.float(), batch["label"])
        self.log_eval_loss(stage, loss, batch["label"].shape[0])
        if out.attention_maps is not None and (k := self.vis_room(stage)):
            self.add_vis({"image": batch["image"][:k], "maps": out.attention_maps[:k]})

    def render_vis(self, items: dict[str, Tensor]) -> Tensor:
        """Faces, their attention maps and (with AGDA) the augmented face."""
        images, maps = items["image"], items["maps"]
        agda = None
        if self.augmentation is not None:
            mixed, _, _ = self.augmentation(self.normalize(images), maps)
            agda = (mixed * self.input_std + self.input_mean).clamp(0, 1).cpu()
        return attention_grid(images.float().cpu(), maps.float().cpu(), agda)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        out = self(batch["image"])
        return {"key": batch.get("key"), "prob": out.logits.float().softmax(dim=1)[:, 1]}

    def before_compute(self, stage: str, metrics: DetectionMetrics) -> None:
        if stage == "test":  # the validation-tuned thresholds, reported beside 0.5
            metrics.val_thresholds = tuple(self.val_thresholds.tolist())

    def stage_values(self, stage: str, metrics: DetectionMetrics) -> dict[str, Tensor]:
        values = self._dropped_videos(stage)
        if stage == "val" and not self.trainer.sanity_checking:
            self.val_thresholds.copy_(metrics.balanced_thresholds())
            values["val/valthr"], values["val/video_valthr"] = self.val_thresholds.float().unbind()
        return values

    def after_compute(self, stage: str, metrics: DetectionMetrics) -> None:
        if stage == "test":  # every process's frames, for scores.csv and per-method metrics
            probs, labels, ids = metrics.frames()
            self.test_scores = {"probs": probs.cpu(), "labels": labels.cpu(), "video_ids": ids}

    def train_epoch_values(self) -> dict[str, Tensor]:
        return self._dropped_videos("train")


def _default_val_thresholds(state_dict: dict, prefix: str, *args: Any) -> None:
    """Checkpoints written before ``val_thresholds`` existed load with it unset (NaN)."""
    state_dict.setdefault(prefix + "val_thresholds", torch.full((2,), float("nan"), dtype=torch.float64))
