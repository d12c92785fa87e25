"""The metric card: what ``metrics.json`` says about how its numbers were measured.

:func:`report_blocks` gives the blocks forgery-train and forgery-eval write beside the dataset name and size:

- ``metrics``: the headline metrics (everything logged for the stage except ``<stage>/extra/*``);
- ``extra``: the variants asked for with ``metrics.extra=[...]`` (``<stage>/extra/<name>``), never headline;
- ``intervals``: ``{"test/pixel_f1": [lo, hi], ...}`` bootstrap intervals computed by the module's metric
  from its per-sample scores (:mod:`forgery.metrics.bootstrap`); ``bootstrap``: how (n, seed, level, unit);
- ``protocol``: the threshold rule, per-image vs dataset-wide metrics, which images enter pixel metrics,
  the image-score and video-aggregation rules, the checkpoint selection, the split manifests' sha256, the
  perturbation, the image size and resize policy, the package version and git commit.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import forgery
from forgery.metrics.options import MetricOptions

__all__ = ["git_info", "checkpoint_selection", "protocol_card", "report_blocks", "split_extra"]

EXTRA_TAG = "extra/"


def git_info(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: this package's
    source); both None outside a checkout (an installed wheel) or without git."""
    root = Path(path) if path is not None else Path(forgery.__file__).resolve().parent.parent
    none = {"commit": None, "dirty": None}
    if not (root / ".git").exists():
        return none

    def run(*args: str) -> str:
        cmd = ["git", "-C", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = run("rev-parse", "HEAD").strip()
        dirty = bool(run("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return none
    return {"commit": commit or None, "dirty": dirty}


def checkpoint_selection(trainer: Any) -> dict[str, Any] | None:
    """How the best checkpoint is chosen: the monitored metric, its mode and split (its ``<split>/`` prefix),
    from the trainer's first ModelCheckpoint; None without a monitored one."""
    cb = getattr(trainer, "checkpoint_callback", None)
    monitor = getattr(cb, "monitor", None)
    if not monitor:
        return None
    return {"monitor": monitor, "mode": cb.mode, "split": monitor.split("/")[0] if "/" in monitor else None}


def split_extra(metrics: Mapping[str, Any], stage: str = "test") -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline, extra): ``<stage>/extra/*`` keys go to extra."""
    tag = f"{stage}/{EXTRA_TAG}"
    head = {k: v for k, v in metrics.items() if not k.startswith(tag)}
    extra = {k: v for k, v in metrics.items() if k.startswith(tag)}
    return head, extra


def _plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def protocol_card(
    kind: str,
    threshold: float,
    options: MetricOptions | Mapping[str, Any] | None = None,
    *,
    num_bins: int | None = None,
    selection: Mapping[str, Any] | None = None,
    splits: Mapping[str, Mapping[str, Any]] | None = None,
    perturbation: Any = None,
    image_size: int | None = None,
    resize: str | None = None,
    val_thresholds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The ``protocol`` block of ``metrics.json`` for a ``splicing`` or ``faces`` evaluation.

    Args:
        kind: the module's ``kind``; threshold: its fixed decision threshold; options: ``metrics:``.
        num_bins: pixel AUROC histogram bins (splicing).
        selection: :func:`checkpoint_selection` of the training run (None: not known, e.g. old checkpoints,
            or the final weights were tested).
        splits: the run's split manifests, ``{split: {"n", "sha256"}}``
            (:func:`forgery.data.manifest.manifest_summary`); None or empty: none written.
        perturbation: the evaluation-time perturbation config (None: clean inputs).
        image_size, resize: the evaluation size and resize policy of the data.
        val_thresholds: the (frame, video) thresholds tuned on validation (faces).
    """
    opts = MetricOptions.from_config(options)
    card: dict[str, Any] = {
        "task": kind,
        "threshold": {
            "rule": "fixed",
            "value": float(threshold),
            "decision": "positive when prob > threshold",
        },
        "checkpoint_selection": dict(selection) if selection else None,
        "split_sha256": {k: v.get("sha256") for k, v in splits.items()} if splits else None,
        "perturbation": _plain(perturbation),
        "image_size": image_size,
        "resize": resize,
        "extra": list(opts.extra),
        "version": forgery.__version__,
        "git": git_info(),
    }
    if kind == "splicing":
        card.update(
            pixel_metrics={
                "images": "tampered only (ground truth has a tampered valid pixel); authentic images do not "
                "enter pixel_*",
                "per_image": "pixel_f1, pixel_iou, pixel_mcc, pixel_auroc: the mean of per-image scores",
                "dataset_wide": "pixel_*_global: one confusion matrix / ROC over every valid pixel of every "
                "image, tampered and authentic",
                "auroc": f"binned, {num_bins} equal-width bins on [0, 1], ties count half",
                "valid_pixels": "padding (native-size evaluation pads to a multiple of 16; pad_crop) is "
                "left out of every metric",
            },
            image_score="max of the probability map over valid pixels; label: tampered when the mask has a "
            "tampered pixel",
            video_aggregation=None,
        )
        if "border_f1" in opts.extra:
            card["border_px"] = opts.border_px
    else:
        t = val_thresholds or (float("nan"), float("nan"))
        card.update(
            frame_metrics="pooled over every test frame (acc at the fixed threshold, auc, eer, ap, ece)",
            video_aggregation={
                "rule": opts.video_aggregation,
                "topk": opts.video_topk if opts.video_aggregation == "topk_mean" else None,
                "key": "unique video key dataset/method/compression/id",
            },
            ece={
                "bins": opts.ece_bins,
                "of": "the fake probability, equal-width bins (sklearn calibration_curve)",
            },
            val_thresholds={
                "rule": "maximises balanced accuracy on the validation split, carried to test (*_valthr)",
                "frame": _finite(t[0]),
                "video": _finite(t[1]),
            },
        )
    return card


def report_blocks(
    module: Any,
    datamodule: Any,
    metrics: Mapping[str, float | None],
    *,
    checkpoint: str | None,
    stage: str = "test",
    splits: Mapping[str, Mapping[str, Any]] | None = None,
    perturbation: Any = None,
) -> dict[str, Any]:
    """``metrics``, ``extra``, ``intervals``, ``bootstrap`` and ``protocol`` for ``metrics.json``.

    ``module``: the tested ForgeryModule (its ``hparams.threshold``, ``metric_options``, ``test_intervals``,
    ``build_config["selection"]``); ``datamodule``: its ``hparams`` (image size, resize policy);
    ``checkpoint``: the tested checkpoint, None when the final weights were tested (no selection then).
    """
    head, extra = split_extra(metrics, stage)
    hp = getattr(module, "hparams", {}) or {}
    data_hp = getattr(datamodule, "hparams", {}) or {}
    opts: MetricOptions = getattr(module, "metric_options", None) or MetricOptions()
    selection = (getattr(module, "build_config", None) or {}).get("selection") if checkpoint else None
    kind = getattr(module, "kind", "generic")
    thresholds = getattr(module, "val_thresholds", None)
    card = protocol_card(
        kind,
        hp.get("threshold", 0.5),
        opts,
        num_bins=hp.get("num_bins"),
        selection=selection,
        splits=splits,
        perturbation=perturbation,
        image_size=data_hp.get("image_size"),
        resize=data_hp.get("eval_resize", "resize" if kind == "faces" else None),
        val_thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
    )
    if not checkpoint:
        card["checkpoint_selection"] = {"rule": "the final weights (no best checkpoint)"}
    intervals = dict(getattr(module, "test_intervals", {}) or {})
    spec = opts.bootstrap
    bootstrap = None
    if spec.n and intervals:
        video = kind == "faces" and getattr(getattr(module, "test_metrics", None), "video_level", False)
        bootstrap = {
            "n": spec.n,
            "seed": spec.seed,
            "level": spec.level,
            "method": "percentile",
            "unit": "video" if video else ("frame" if kind == "faces" else "image"),
        }
        if kind == "splicing":
            bins = getattr(getattr(module, "test_metrics", None), "hist_bins", None)
            bootstrap["pixel_auroc_global_hist_bins"] = bins or None
    return {
        "metrics": head,
        "extra": extra,
        "intervals": {
            k: [_finite(lo) if lo is not None else None, _finite(hi) if hi is not None else None]
            for k, (lo, hi) in intervals.items()
        },
        "bootstrap": bootstrap,
        "protocol": card,
    }
