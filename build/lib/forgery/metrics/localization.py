"""Splicing-localization metrics: pixel F1 / IoU / MCC / AUROC, image-level AUROC and balanced accuracy.

Honest protocol: one FIXED threshold (default 0.5, a pixel is predicted tampered when ``prob > threshold``,
the torchmetrics convention); no per-image best threshold and no ``max(F1, F1 of the inverted mask)``.

Two pixel-level flavours are reported:

- ``pixel_*``: the mean over TAMPERED images (mask has at least one positive pixel) of per-image scores,
  the protocol of most splicing-localization papers. Authentic images do not enter these means.
- ``pixel_f1_all_tampered``: the same per-image mean F1 for the trivial prediction "every pixel tampered",
  2p / (1 + p) with p the tampered fraction: the floor a localizer has to beat on this data.
- ``pixel_*_global``: one confusion matrix / one probability histogram over every pixel of every image,
  tampered and authentic alike.

Pixel AUROC is binned: probabilities fall into ``num_bins`` equal-width bins on [0, 1] and the ROC is the
trapezoid over the bin edges, so pixels sharing a bin count as ties (half). The state is two histograms,
so memory does not grow with the dataset; the error versus the exact AUROC is at most the fraction of
positive/negative pairs that share a bin (about 1e-3 with 1000 bins on spread-out scores).

Undefined values are NaN, never an exception: AUROC with a single class present, any mean over zero images.
A tampered image without authentic pixels (fully covered) has no per-image AUROC; it is left out of
``pixel_auroc`` and counted in ``n_pixel_auroc_skipped``.

States are float64 / int64 (exact counts, sklearn-equal sums), so the metric is meant for CPU/CUDA (not MPS).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

__all__ = ["LocalizationMetrics", "localization_metrics"]

_WHERE = "forgery.metrics.localization"
# states reduced by summation (per-update contributions are added); the rest are "cat" lists
_SUM_STATES = (
    "tp",
    "fp",
    "fn",
    "tn",
    "hist_pos",
    "hist_neg",
    "sum_f1",
    "sum_iou",
    "sum_mcc",
    "sum_auroc",
    "sum_f1_all",
)
_COUNT_STATES = ("n_tampered", "n_auroc")
_CAT_STATES = ("image_scores", "image_labels")


def _check_args(threshold: float, num_bins: int) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{_WHERE}: threshold must be a float in [0, 1], got {threshold!r}")
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"{_WHERE}: num_bins must be a positive int, got {num_bins!r}")


def _squeeze_channel(x: Tensor, name: str) -> Tensor:
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{_WHERE}: {name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x


def _check_inputs(probs: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and flatten to probs (B, H*W) float and masks (B, H*W) bool."""
    if not isinstance(probs, Tensor) or not isinstance(masks, Tensor):
        raise TypeError(f"{_WHERE}: probs and masks must be torch.Tensor, got {type(probs)}, {type(masks)}")
    p, m = _squeeze_channel(probs, "probs"), _squeeze_channel(masks, "masks")
    if p.shape != m.shape:
        raise ValueError(
            f"{_WHERE}: probs and masks must have the same (B, H, W), got {tuple(probs.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if p.shape[1] * p.shape[2] == 0:
        raise ValueError(f"{_WHERE}: images must have at least one pixel, got shape {tuple(probs.shape)}")
    if not p.is_floating_point():
        raise TypeError(f"{_WHERE}: probs must be a floating-point tensor of probabilities, got {p.dtype}")
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        bad = p[~((p >= 0) & (p <= 1))][0].item()
        raise ValueError(
            f"{_WHERE}: probs must be probabilities in [0, 1] (apply sigmoid to logits), found {bad!r}"
        )
    if m.dtype != torch.bool:
        if m.is_complex() or (m.numel() and not bool(((m == 0) | (m == 1)).all())):
            bad = m[~((m == 0) | (m == 1))][0].item()
            raise ValueError(
                f"{_WHERE}: masks must be binary with values in {{0, 1}} (1 = tampered), found {bad!r}; "
                "binarise e.g. 255-valued ground truth before the metric"
            )
        m = m == 1
    B = p.shape[0]
    return p.reshape(B, -1).float(), m.reshape(B, -1)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den in float64, 0 where den == 0 (sklearn's zero_division=0 convention)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _f1_iou_mcc(tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """F1, IoU (Jaccard) and MCC from confusion counts of any shape; 0 on a zero denominator (sklearn)."""
    tp, fp, fn, tn = tp.double(), fp.double(), fn.double(), tn.double()
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    iou = _safe_div(tp, tp + fp + fn)
    # square roots of pair products keep the denominator far from float64 overflow
    den = torch.sqrt((tp + fp) * (tp + fn)) * torch.sqrt((tn + fp) * (tn + fn))
    mcc = _safe_div(tp * tn - fp * fn, den)
    return f1, iou, mcc


def _hist_auroc(hist_pos: Tensor, hist_neg: Tensor) -> Tensor:
    """Binned AUROC from histograms (..., num_bins) of positive / negative scores; NaN if a class is empty.

    Trapezoid over thresholds at the bin edges: each negative in bin j beats the positives in higher bins and
    ties (half) with the positives in bin j.
    """
    pos, neg = hist_pos.double(), hist_neg.double()
    n_pos, n_neg = pos.sum(-1), neg.sum(-1)
    pos_above = n_pos.unsqueeze(-1) - pos.cumsum(-1)
    area = (neg * (pos_above + 0.5 * pos)).sum(-1)
    den = n_pos * n_neg
    return torch.where(den > 0, area / den.clamp_min(1.0), torch.full_like(area, float("nan")))


def _exact_auroc(scores: Tensor, labels: Tensor) -> Tensor:
    """Exact (unbinned) AUROC, float64; NaN when only one class is present (sklearn would raise)."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.numel():
        return torch.tensor(float("nan"), dtype=torch.float64, device=scores.device)
    return binary_auroc(scores, labels.long(), validate_args=False).double()


def _balanced_accuracy(preds: Tensor, labels: Tensor) -> Tensor:
    """sklearn balanced_accuracy_score: mean recall over the classes present in labels; NaN if empty."""
    recalls = []
    for cls in (0, 1):
        sel = labels == cls
        recalls.append(_safe_div((preds[sel] == cls).sum(), sel.sum()) if bool(sel.any()) else None)
    present = [r for r in recalls if r is not None]
    if not present:
        return torch.tensor(float("nan"), dtype=torch.float64, device=preds.device)
    return torch.stack(present).mean()


def _localization_update(probs: Tensor, masks: Tensor, threshold: float, num_bins: int) -> dict[str, Tensor]:
    """One batch's contribution to every state: sums for the sum states, (B,) tensors for the cat states."""
    p, m = _check_inputs(probs, masks)
    B, HW = p.shape
    dev = p.device
    pred = p > threshold
    tp = (pred & m).sum(1)
    fp = (pred & ~m).sum(1)
    fn = (~pred & m).sum(1)
    tn = HW - tp - fp - fn
    f1, iou, mcc = _f1_iou_mcc(tp, fp, fn, tn)
    tampered = (tp + fn) > 0

    # per-image histograms in one bincount: offset by image (b * num_bins) and by class (negatives after
    # all positives), giving (2, B, num_bins)
    bins = (p * num_bins).long().clamp_(0, num_bins - 1)
    offset = torch.arange(B, device=dev).unsqueeze(1) * num_bins + (~m).long() * (B * num_bins)
    hist = torch.bincount((bins + offset).flatten(), minlength=2 * B * num_bins).view(2, B, num_bins)
    auroc = _hist_auroc(hist[0], hist[1])
    has_auroc = tampered & (hist[1].sum(1) > 0)
    zero = torch.zeros((), dtype=torch.float64, device=dev)

    return {
        "tp": tp.sum(),
        "fp": fp.sum(),
        "fn": fn.sum(),
        "tn": tn.sum(),
        "hist_pos": hist[0].sum(0),
        "hist_neg": hist[1].sum(0),
        "sum_f1": torch.where(tampered, f1, zero).sum(),
        "sum_iou": torch.where(tampered, iou, zero).sum(),
        "sum_mcc": torch.where(tampered, mcc, zero).sum(),
        "sum_auroc": torch.where(has_auroc, auroc, zero).sum(),
        # reference: the F1 of predicting every pixel tampered, 2p / (1 + p) for a tampered fraction p
        "sum_f1_all": torch.where(tampered, 2 * (tp + fn).double() / (HW + tp + fn).double(), zero).sum(),
        "n_tampered": tampered.sum(),
        "n_auroc": has_auroc.sum(),
        "image_scores": p.amax(1).double(),
        "image_labels": tampered.long(),
    }


def _localization_compute(state: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """Final metrics from accumulated states (cat states already concatenated to 1-D tensors)."""
    n_tampered, n_auroc = state["n_tampered"].double(), state["n_auroc"].double()
    nan = torch.full_like(n_tampered, float("nan"))

    def mean(total: Tensor, count: Tensor) -> Tensor:
        return torch.where(count > 0, total / count.clamp_min(1.0), nan)

    f1_g, iou_g, mcc_g = _f1_iou_mcc(state["tp"], state["fp"], state["fn"], state["tn"])
    scores, labels = state["image_scores"], state["image_labels"]
    return {
        "pixel_f1": mean(state["sum_f1"], n_tampered),
        "pixel_iou": mean(state["sum_iou"], n_tampered),
        "pixel_mcc": mean(state["sum_mcc"], n_tampered),
        "pixel_auroc": mean(state["sum_auroc"], n_auroc),
        "pixel_f1_all_tampered": mean(state["sum_f1_all"], n_tampered),
        "pixel_f1_global": f1_g,
        "pixel_iou_global": iou_g,
        "pixel_mcc_global": mcc_g,
        "pixel_auroc_global": _hist_auroc(state["hist_pos"], state["hist_neg"]),
        "image_auroc": _exact_auroc(scores, labels).to(n_tampered.device),
        "image_bacc": _balanced_accuracy((scores > threshold).long(), labels).to(n_tampered.device),
        "n_images": torch.tensor(float(labels.numel()), dtype=torch.float64, device=n_tampered.device),
        "n_tampered": n_tampered,
        "n_pixel_auroc_skipped": n_tampered - n_auroc,
    }


def localization_metrics(
    probs: Tensor, masks: Tensor, threshold: float = 0.5, num_bins: int = 1000
) -> dict[str, Tensor]:
    """Functional twin of :class:`LocalizationMetrics` on one batch, probs/masks (B, H, W) or (B, 1, H, W)."""
    _check_args(threshold, num_bins)
    return _localization_compute(_localization_update(probs, masks, threshold, num_bins), threshold)


class LocalizationMetrics(Metric):
    """Pixel- and image-level splicing-localization metrics at a fixed threshold (see module docstring).

    ``update(probs, masks)``: probs (B, H, W) or (B, 1, H, W), P(tampered) per pixel in [0, 1]; masks the
    same shape with values {0, 1} (1 = tampered). ``compute()`` returns float64 scalars: ``pixel_f1``,
    ``pixel_iou``, ``pixel_mcc``, ``pixel_auroc`` (means over tampered images), their ``*_global`` versions
    over all pixels, ``image_auroc`` (exact; NaN with one class), ``image_bacc`` (image score = max pixel
    probability, label = mask has a positive pixel), ``n_images``, ``n_tampered``, ``n_pixel_auroc_skipped``.

    Memory is flat in the number of updates except the two per-image "cat" lists (one float per image).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, num_bins: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        _check_args(threshold, num_bins)
        self.threshold = float(threshold)
        self.num_bins = num_bins
        for name in ("tp", "fp", "fn", "tn", *_COUNT_STATES):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("hist_pos", "hist_neg"):
            self.add_state(name, torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("sum_f1", "sum_iou", "sum_mcc", "sum_auroc", "sum_f1_all"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in _CAT_STATES:
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, masks: Tensor) -> None:
        """Accumulate a batch: probs and masks (B, H, W) or (B, 1, H, W)."""
        batch = _localization_update(probs, masks, self.threshold, self.num_bins)
        for name in (*_SUM_STATES, *_COUNT_STATES):
            setattr(self, name, getattr(self, name) + batch[name])
        for name in _CAT_STATES:
            getattr(self, name).append(batch[name])

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset (NaN where undefined)."""
        state = {name: getattr(self, name) for name in (*_SUM_STATES, *_COUNT_STATES)}
        for name, dtype in zip(_CAT_STATES, (torch.float64, torch.long)):
            value = getattr(self, name)
            empty = isinstance(value, list) and not value
            state[name] = torch.zeros(0, dtype=dtype, device=self.device) if empty else dim_zero_cat(value)
        return _localization_compute(state, self.threshold)
