"""SplicingModule: trains and evaluates a splicing-localization network (MTSE-Net)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.errors import ConfigError
from forgery.losses.targets import edge_targets
from forgery.metrics import LocalizationMetrics
from forgery.models.mtse_net import MTSEOutput
from forgery.modules.base import ForgeryModule, check_finite
from forgery.utils.tiling import check_tiling, tiled_apply
from forgery.utils.visualize import splicing_grid

__all__ = ["SplicingModule"]

log = logging.getLogger(__name__)

VIS_MAX_SIDE = 512  # picture-grid samples are shown at most this large (native-size evaluation)


class SplicingModule(ForgeryModule):
    """Lightning wrapper around a splicing network and its multi-task loss.

    Targets (edges) and augmentations run on the device in ``on_after_batch_transfer``. Metrics: one
    :class:`~forgery.metrics.LocalizationMetrics` per stage at a fixed threshold, logged as ``stage/name``.

    Args:
        net: network whose ``forward(images)`` returns an ``MTSEOutput``.
        loss: multi-task loss ``loss(out, mask, mask_edge, image_edge) -> dict``.
        optimizer: partial optimizer (``_partial_: true``), completed with the parameters.
        scheduler: optional partial LR scheduler.
        scheduler_interval: ``step`` or ``epoch``.
        augmentation: optional paired augmentation ``aug(images, masks)`` applied in training.
        input_mean, input_std: optional normalization of the [0, 1] input (none by default, as in the paper).
        threshold: pixel decision threshold of the metrics.
        num_bins: histogram bins of the pixel AUROC.
        num_vis: samples in the validation picture grid (0 disables it).
        channels_last: run the network in channels-last memory format (faster convolutions on CPU and GPU).
        sync_batchnorm: convert BatchNorm layers to SyncBatchNorm under DDP.
        on_nonfinite: a non-finite training loss ``raise``s an error naming the step and the batch's sample
            ids, or (``skip``) skips that batch and counts it (``train/nonfinite_skipped``).
        eval_tile: outside training, images with a side above this run through the network as overlapping
            ``eval_tile`` x ``eval_tile`` tiles (:meth:`tiled_forward`), so memory is bounded by the tile and
            not by the image (e.g. NIST16's 3488 x 2616 with ``data.eval_resize=tile``). A multiple of 16;
            None (default) always runs the whole image.
        eval_tile_overlap: pixels shared by neighbouring tiles, in [0, eval_tile).
        compile: ``torch.compile`` the network (in place, state-dict names unchanged) when the trainer sets
            the model up.
        compile_options: ``torch.compile``'s keyword arguments (``backend``, ``mode``), or None.
    """

    kind = "splicing"

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        augmentation: nn.Module | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        threshold: float = 0.5,
        num_bins: int = 1000,
        num_vis: int = 8,
        channels_last: bool = True,
        sync_batchnorm: bool = False,
        on_nonfinite: str = "raise",
        eval_tile: int | None = None,
        eval_tile_overlap: int = 64,
        compile: bool = False,
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "augmentation"], logger=False
        )
        self._tile_multiple = int(getattr(net, "downsample_factor", 16))
        if eval_tile is not None:
            check_tiling(eval_tile, eval_tile_overlap, self._tile_multiple)
        if not isinstance(channels_last, bool):
            raise ConfigError(f"channels_last must be true or false, got {channels_last!r}")
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.loss = loss
        self.augmentation = augmentation
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.register_input_norm(input_mean, input_std)
        self.val_metrics = self.build_metrics("val")
        self.test_metrics = self.build_metrics("test")

    def build_metrics(self, stage: str) -> LocalizationMetrics:
        """Localization metrics under ``metric_options``; per-image data only where intervals need it."""
        opts = self.metric_options
        return LocalizationMetrics(
            threshold=self.hparams.threshold,
            num_bins=self.hparams.num_bins,
            extra=opts.extra,
            border_px=opts.border_px,
            per_image=stage == "test" and opts.bootstrap.n > 0,
            hist_bins=opts.bootstrap.hist_bins,
        )

    def setup(self, stage: str) -> None:
        if self.hparams.sync_batchnorm and self._trainer is not None and self.trainer.world_size > 1:
            self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        data_hp = getattr(datamodule, "hparams", None) or {}
        if data_hp.get("eval_resize") == "tile" and not self.hparams.eval_tile:
            raise ConfigError(
                "data.eval_resize=tile needs a tile size: add eval_tile=512 (forgery-eval) or "
                "model.eval_tile=512 (forgery-train)"
            )

    def set_eval_tiling(self, tile: int | None, overlap: int | None = None) -> None:
        """Sets ``eval_tile`` (None: whole images) and, if given, ``eval_tile_overlap`` on a built module (the
        eval-time overrides of forgery-eval / forgery-predict; the checkpoint's config is left as it is)."""
        overlap = self.hparams.eval_tile_overlap if overlap is None else overlap
        if tile is not None:
            check_tiling(tile, overlap, self._tile_multiple)
        self.hparams.eval_tile = tile
        self.hparams.eval_tile_overlap = overlap

    def forward(self, images: Tensor):
        """images (B, 3, H, W) in [0, 1] -> the network's output at (H, W).

        In training, or without ``eval_tile``, or when H and W both fit in it, the network runs on the whole
        image (H, W divisible by 16); otherwise tile by tile (:meth:`tiled_forward`, any H, W).
        """
        tile = self.hparams.get("eval_tile")
        if tile and not self.training and max(images.shape[-2:]) > tile:
            return self.tiled_forward(images)
        return self._net_forward(images)

    def _net_forward(self, images: Tensor):
        x = self.normalize(images)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def tiled_forward(self, images: Tensor) -> MTSEOutput:
        """Sliding-window forward of images (B, 3, H, W), without gradients: ``eval_tile``-sided tiles
        overlapping by ``eval_tile_overlap``, see :func:`~forgery.utils.tiling.tiled_apply`.

        What is stitched (linear cross-fade of the overlaps): the tampered probability, the mask-edge
        probability and the image-edge map. The returned ``MTSEOutput`` is float32 at (H, W); its logits are
        the log class probabilities, so ``mask_prob`` / ``mask_edge_prob`` give the stitched maps (to float
        rounding) and the cross-entropy terms of the loss stay meaningful.
        """

        def per_tile(x: Tensor) -> Tensor:  # (B, 3, t, t) -> (B, 3, t, t): p_mask, p_mask_edge, image edge
            out = self._net_forward(x)
            return torch.cat([out.mask_prob[:, None], out.mask_edge_prob[:, None], out.image_edge.float()], 1)

        hp = self.hparams
        y = tiled_apply(per_tile, images, hp.eval_tile, hp.eval_tile_overlap, self._tile_multiple)
        return MTSEOutput(
            mask_logits=_log_probs(y[:, 0]), mask_edge_logits=_log_probs(y[:, 1]), image_edge=y[:, 2:3]
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "image" not in batch:  # every sample of the batch was skipped (data.on_error=skip)
            return batch
        if self._trainer is not None and self.trainer.training and self.augmentation is not None:
            with self.step_rng(stream=1):
                batch["image"], batch["mask"] = self.augmentation(batch["image"], batch["mask"])
        batch["image_edge"], batch["mask_edge"] = edge_targets(batch["image"], batch["mask"])
        self.perturb_test_batch(batch)  # forgery-eval perturb=: after the targets (those of the clean image)
        return batch

    def set_perturbation(self, perturbation: nn.Module | None) -> None:
        if perturbation is not None and getattr(perturbation, "geometric", False):
            perturbation.multiple = self._tile_multiple  # the resized image must fit the network
        super().set_perturbation(perturbation)

    def _shared_step(self, batch: dict) -> tuple[Any, dict[str, Tensor]]:
        out = self(batch["image"])
        size = batch["mask"].shape[-2:]
        if out.mask_logits.shape[-2:] != size and getattr(self.perturbation, "geometric", False):
            r = self.perturbation.restore  # perturb=resize: the output back to the ground truth's size
            out = MTSEOutput(r(out.mask_logits, size), r(out.mask_edge_logits, size), r(out.image_edge, size))
        terms = self.loss(out, batch["mask"][:, 0].long(), batch["mask_edge"], batch["image_edge"])
        return out, terms

    def _check_finite(self, loss: Tensor, batch: dict, stage: str) -> bool:
        return check_finite(self, loss, list(batch.get("id", [])), stage)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not self.count_skipped(batch, "train"):
            return None
        with self.step_rng(stream=2):
            _, terms = self._shared_step(batch)
        if not self._check_finite(terms["loss"], batch, "train"):
            return None
        bs = batch["image"].shape[0]
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/loss_{k}": v for k, v in terms.items() if k != "loss"}, batch_size=bs)
        return terms["loss"]

    vis_key = "val/predictions"

    def eval_step(self, batch: dict, stage: str, metrics: LocalizationMetrics) -> None:
        out, terms = self._shared_step(batch)
        probs = out.mask_prob
        metrics.update(probs, batch["mask"][:, 0], batch["valid"][:, 0] if "valid" in batch else None)
        self.log_eval_loss(stage, terms["loss"], batch["image"].shape[0])
        if k := self.vis_room(stage):
            item = {
                "image": batch["image"][:k].cpu(),
                "mask": batch["mask"][:k].cpu(),
                "prob": probs[:k, None].float().cpu(),
                "edge": out.image_edge[:k].float().cpu(),
            }
            # native-size evaluation (eval_resize=none/tile): one grid needs one size, and a small one
            size = self._vis[0]["image"].shape[-2:] if self._vis else _preview_size(*item["image"].shape[-2:])
            self.add_vis(_resize_vis(item, size))

    def render_vis(self, items: dict[str, Tensor]) -> Tensor:
        return splicing_grid(items["image"], items["mask"], items["prob"], items["edge"])

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        out = self(batch["image"])
        return {"id": batch.get("id"), "prob": out.mask_prob, "edge": out.image_edge}


def _log_probs(p: Tensor) -> Tensor:
    """(B, H, W) probability of class 1 -> (B, 2, H, W) log class probabilities (softmax gives back p)."""
    probs = torch.stack([1.0 - p, p], dim=1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def _preview_size(h: int, w: int) -> tuple[int, int]:
    scale = min(1.0, VIS_MAX_SIDE / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize_vis(item: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
    """Grid samples (N, C, H, W) resized to ``size`` (nearest for the mask, bilinear otherwise)."""
    if tuple(item["image"].shape[-2:]) == tuple(size):
        return item
    return {
        k: F.interpolate(v, size=tuple(size), mode="nearest")
        if k == "mask"
        else F.interpolate(v, size=tuple(size), mode="bilinear", align_corners=False)
        for k, v in item.items()
    }
