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

Valid pixels: ``update(probs, masks, valid)`` takes an optional (B, H, W) valid-pixel mask; pixels outside
it (the zero padding of native-size evaluation, which pads to a multiple of 16) enter nothing: no confusion
count, no histogram, not the image score. The metrics equal those of the unpadded images.

Extra variants (``extra=[...]``), reported by some papers and logged as ``extra/<name>``, never as headline
metrics; each is a mean over tampered images of a per-image value:

- ``extra/best_threshold_f1``: the F1 at the image's own best threshold (an oracle: it uses the mask).
- ``extra/permuted_f1``: max(F1 of the map, F1 of the inverted prediction) at the fixed threshold.
- ``extra/border_f1``: the F1 over pixels farther than ``border_px`` from the mask boundary: a pixel is left
  out when its (2k+1) x (2k+1) window (k = ``border_px``, clipped to the valid pixels) holds both tampered and
  authentic pixels. A tampered image with no tampered pixel left is skipped and counted
  (``extra/n_border_f1_skipped``).

Per-image data (``per_image=True``): one row of scores and confusion counts per image and, with
``hist_bins``, a ``hist_bins``-bin probability histogram per image (merged from the ``num_bins`` bins): what
:meth:`LocalizationMetrics.intervals` resamples for bootstrap intervals (about 10 floats + 2 x ``hist_bins``
int32 per image).

States are float64 / int64 (exact counts, sklearn-equal sums), so the metric is meant for CPU/CUDA (not MPS).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

from forgery.errors import ConfigError
from forgery.metrics import bootstrap as bs
from forgery.metrics.options import EXTRA_VARIANTS

__all__ = ["LocalizationMetrics", "localization_metrics", "localization_stat_fn", "default_hist_bins"]

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
# columns of the per-image rows (flattened "per_image" cat state), then one column per extra variant
BASE_COLUMNS = ("tampered", "f1", "iou", "mcc", "auroc", "f1_all", "tp", "fp", "fn", "tn")


def _check_args(threshold: float, num_bins: int) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{_WHERE}: threshold must be a float in [0, 1], got {threshold!r}")
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
        raise ConfigError(f"{_WHERE}: num_bins must be a positive int, got {num_bins!r}")


def _check_extra(extra: Sequence[str], border_px: int, hist_bins: int, num_bins: int) -> tuple[str, ...]:
    if isinstance(extra, str):
        extra = (extra,)
    unknown = [e for e in extra if e not in EXTRA_VARIANTS]
    if unknown:
        raise ConfigError(f"{_WHERE}: unknown extra variant(s) {unknown}; choose from {list(EXTRA_VARIANTS)}")
    if not isinstance(border_px, int) or isinstance(border_px, bool) or border_px < 0:
        raise ConfigError(f"{_WHERE}: border_px must be an int >= 0, got {border_px!r}")
    if not isinstance(hist_bins, int) or isinstance(hist_bins, bool) or hist_bins < 0:
        raise ConfigError(f"{_WHERE}: hist_bins must be an int >= 0, got {hist_bins!r}")
    if hist_bins and num_bins % hist_bins:
        raise ConfigError(f"{_WHERE}: hist_bins ({hist_bins}) must divide num_bins ({num_bins})")
    return tuple(dict.fromkeys(extra))


def default_hist_bins(num_bins: int, cap: int = 100) -> int:
    """The largest divisor of ``num_bins`` that is at most ``cap`` (100 for the default 1000 bins)."""
    return max(d for d in range(1, min(cap, num_bins) + 1) if num_bins % d == 0)


def _squeeze_channel(x: Tensor, name: str) -> Tensor:
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{_WHERE}: {name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x


def _check_inputs(
    probs: Tensor, masks: Tensor, valid: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate and flatten to probs (B, H*W) float, masks (B, H*W) bool and valid (B, H*W) bool or None."""
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
    v = None
    if valid is not None:
        if not isinstance(valid, Tensor):
            raise TypeError(f"{_WHERE}: valid must be a torch.Tensor or None, got {type(valid)}")
        v = _squeeze_channel(valid, "valid")
        if v.shape != p.shape:
            raise ValueError(
                f"{_WHERE}: valid must have the (B, H, W) of probs, got {tuple(valid.shape)} and "
                f"{tuple(probs.shape)}"
            )
        if v.dtype != torch.bool:
            if v.numel() and not bool(((v == 0) | (v == 1)).all()):
                raise ValueError(f"{_WHERE}: valid must be binary (1 = a real pixel, 0 = padding)")
            v = v == 1
        v = v.reshape(B, -1)
        if B and not bool(v.any(1).all()):
            raise ValueError(f"{_WHERE}: every image needs at least one valid pixel (valid is all 0 for one)")
    return p.reshape(B, -1).float(), m.reshape(B, -1), v


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
    return bs.auroc_from_histograms(hist_pos, hist_neg)


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


def _best_threshold_f1(p: Tensor, pos: Tensor, v: Tensor) -> Tensor:
    """(B,) max over thresholds t of F1(prob >= t) per image, over valid pixels (0 for "predict nothing").

    Sorting the valid probabilities in descending order, each cut after a run of equal values is one
    threshold; the top-j pixels predicted tampered give F1 = 2 TP_j / (j + P)."""
    key = torch.where(v, p, torch.full_like(p, -1.0))  # invalid pixels sort last
    sp, order = key.sort(dim=1, descending=True)
    tp = pos.gather(1, order).double().cumsum(1)
    j = torch.arange(1, p.shape[1] + 1, dtype=torch.float64, device=p.device)
    n_pos = pos.sum(1, keepdim=True).double()
    f1 = 2 * tp / (j + n_pos)
    cut = torch.ones_like(v)
    cut[:, :-1] = sp[:, :-1] != sp[:, 1:]
    cut &= sp >= 0
    return torch.where(cut, f1, torch.zeros_like(f1)).amax(1)


def _border_f1(pred: Tensor, pos: Tensor, v: Tensor, shape: tuple[int, int], k: int) -> Tensor:
    """(B,) F1 over valid pixels outside the band of k px around the mask boundary; NaN when no tampered
    pixel is left (see the module docstring)."""
    B = pred.shape[0]
    H, W = shape
    neg = ~pos & v
    if k > 0:
        grow = lambda x: F.max_pool2d(x.view(B, 1, H, W).float(), 2 * k + 1, stride=1, padding=k) > 0  # noqa: E731
        band = (grow(pos) & grow(neg)).view(B, -1)
    else:
        band = torch.zeros_like(v)
    keep = v & ~band
    tp = (pred & pos & keep).sum(1)
    fp = (pred & neg & keep).sum(1)
    fn = (~pred & pos & keep).sum(1)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return torch.where(tp + fn > 0, f1, torch.full_like(f1, float("nan")))


def _localization_update(
    probs: Tensor,
    masks: Tensor,
    threshold: float,
    num_bins: int,
    valid: Tensor | None = None,
    extra: Sequence[str] = (),
    border_px: int = 8,
    per_image: bool = False,
    hist_bins: int = 0,
) -> dict[str, Tensor]:
    """One batch's contribution to every state: sums for the sum states, (B,) tensors for the cat states,
    and with ``per_image`` the flattened per-image rows (``per_image``) and histograms (``image_hist``)."""
    H, W = _squeeze_channel(probs, "probs").shape[-2:]
    p, m, v = _check_inputs(probs, masks, valid)
    B, HW = p.shape
    dev = p.device
    if v is None:
        v = torch.ones_like(m)
    pos = m & v  # a mask pixel outside the valid region does not count
    n_valid = v.sum(1)
    pred = (p > threshold) & v
    tp = (pred & pos).sum(1)
    fp = (pred & ~m).sum(1)
    fn = (~pred & pos).sum(1)
    tn = n_valid - tp - fp - fn
    f1, iou, mcc = _f1_iou_mcc(tp, fp, fn, tn)
    tampered = (tp + fn) > 0

    # per-image histograms in one bincount: offset by image (b * num_bins) and by class (negatives after
    # all positives), giving (2, B, num_bins); invalid pixels go to one extra slot, dropped
    bins = (p * num_bins).long().clamp_(0, num_bins - 1)
    offset = torch.arange(B, device=dev).unsqueeze(1) * num_bins + (~pos).long() * (B * num_bins)
    index = torch.where(v, bins + offset, torch.full_like(bins, 2 * B * num_bins))
    hist = torch.bincount(index.flatten(), minlength=2 * B * num_bins + 1)[:-1].view(2, B, num_bins)
    auroc = _hist_auroc(hist[0], hist[1])
    has_auroc = tampered & (hist[1].sum(1) > 0)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    f1_all = 2 * (tp + fn).double() / (n_valid + tp + fn).double()

    out = {
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
        "sum_f1_all": torch.where(tampered, f1_all, zero).sum(),
        "n_tampered": tampered.sum(),
        "n_auroc": has_auroc.sum(),
        "image_scores": torch.where(v, p, torch.zeros_like(p)).amax(1).double(),
        "image_labels": tampered.long(),
    }
    if not (per_image or extra):
        return out
    nan = torch.full_like(f1, float("nan"))
    columns = [tampered.double(), f1, iou, mcc, torch.where(has_auroc, auroc, nan), f1_all]
    columns += [x.double() for x in (tp, fp, fn, tn)]
    for name in extra:
        if name == "best_threshold_f1":
            value = _best_threshold_f1(p, pos, v)
        elif name == "permuted_f1":  # the inverted prediction has TP = fn, FP = tn, FN = tp
            value = torch.maximum(f1, _safe_div(2 * fn, 2 * fn + tn + tp))
        else:  # border_f1
            value = _border_f1(pred, pos, v, (H, W), border_px)
        columns.append(torch.where(tampered, value.double(), nan))
    out["per_image"] = torch.stack(columns, 1).flatten()
    if hist_bins:
        coarse = hist.view(2, B, hist_bins, num_bins // hist_bins).sum(-1).permute(1, 0, 2)
        out["image_hist"] = coarse.to(torch.int32).flatten()
    return out


def _mean(total: Tensor, count: Tensor) -> Tensor:
    return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, float("nan")))


def _extra_metrics(rows: Tensor, extra: Sequence[str]) -> dict[str, Tensor]:
    """``extra/<name>`` means over tampered images from the per-image rows (N, C)."""
    out: dict[str, Tensor] = {}
    tampered = rows[:, 0] > 0
    for i, name in enumerate(extra):
        col = rows[:, len(BASE_COLUMNS) + i]
        defined = tampered & torch.isfinite(col)
        total = torch.where(defined, col, torch.zeros_like(col)).sum()
        out[f"extra/{name}"] = _mean(total, defined.sum().double())
        if name == "border_f1":
            out["extra/n_border_f1_skipped"] = (tampered & ~defined).sum().double()
    return out


def _localization_compute(
    state: dict[str, Tensor], threshold: float, extra: Sequence[str] = ()
) -> dict[str, Tensor]:
    """Final metrics from accumulated states (cat states already concatenated to 1-D tensors)."""
    n_tampered, n_auroc = state["n_tampered"].double(), state["n_auroc"].double()

    f1_g, iou_g, mcc_g = _f1_iou_mcc(state["tp"], state["fp"], state["fn"], state["tn"])
    scores, labels = state["image_scores"], state["image_labels"]
    out = {
        "pixel_f1": _mean(state["sum_f1"], n_tampered),
        "pixel_iou": _mean(state["sum_iou"], n_tampered),
        "pixel_mcc": _mean(state["sum_mcc"], n_tampered),
        "pixel_auroc": _mean(state["sum_auroc"], n_auroc),
        "pixel_f1_all_tampered": _mean(state["sum_f1_all"], n_tampered),
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
    if extra:
        rows = state["per_image"].double().view(-1, len(BASE_COLUMNS) + len(extra))
        out.update({k: v.to(n_tampered.device) for k, v in _extra_metrics(rows, extra).items()})
    return out


def localization_stat_fn(
    rows: Tensor,
    scores: Tensor,
    labels: Tensor,
    threshold: float,
    extra: Sequence[str] = (),
    image_hist: Tensor | None = None,
    hist_index: Tensor | None = None,
):
    """The localization metrics as functions of image weights (for :func:`.bootstrap.bootstrap_ci`).

    Args:
        rows: per-image rows (N, len(BASE_COLUMNS) + len(extra)); scores, labels: (N,) image score / label.
        image_hist: (N, 2, hb) per-image positive / negative probability histograms (integer counts, kept in
            their dtype), or None (then no ``pixel_auroc_global``).
        hist_index: (N,) the row of ``image_hist`` of each image of ``rows`` (None: the same order), so the
            histograms need not be copied into the rows' order.

    Returns:
        ``stat(w)``: w (k, N) -> {name: (k,)}; at w = 1 the values equal :func:`localization_metrics` (but
        ``pixel_auroc_global`` at ``hb`` bins instead of ``num_bins``).
    """
    rows = rows.double()
    cols = {name: rows[:, i] for i, name in enumerate(BASE_COLUMNS)}
    tampered = cols["tampered"] > 0
    counts = torch.stack([cols[c] for c in ("tp", "fp", "fn", "tn")], 1)
    preds = (scores > threshold).long()
    hist = None if image_hist is None else image_hist.reshape(rows.shape[0], -1)

    def stat(w: Tensor) -> dict[str, Tensor]:
        out = {f"pixel_{c}": bs.weighted_mean(cols[c], w, tampered) for c in ("f1", "iou", "mcc", "auroc")}
        out["pixel_f1_all_tampered"] = bs.weighted_mean(cols["f1_all"], w, tampered)
        c = w @ counts
        out["pixel_f1_global"], out["pixel_iou_global"], out["pixel_mcc_global"] = _f1_iou_mcc(*c.unbind(1))
        if hist is not None:
            h = bs.weighted_sum(w, hist, hist_index).view(w.shape[0], 2, -1)
            out["pixel_auroc_global"] = bs.auroc_from_histograms(h[:, 0], h[:, 1])
        out["image_auroc"] = bs.weighted_auroc(scores, labels, w)
        out["image_bacc"] = bs.weighted_balanced_accuracy(preds, labels, w)
        for i, name in enumerate(extra):
            out[f"extra/{name}"] = bs.weighted_mean(rows[:, len(BASE_COLUMNS) + i], w, tampered)
        return out

    return stat


def localization_metrics(
    probs: Tensor,
    masks: Tensor,
    threshold: float = 0.5,
    num_bins: int = 1000,
    valid: Tensor | None = None,
    extra: Sequence[str] = (),
    border_px: int = 8,
) -> dict[str, Tensor]:
    """Functional twin of :class:`LocalizationMetrics` on one batch, probs/masks (B, H, W) or (B, 1, H, W),
    optional valid (B, H, W) or (B, 1, H, W) (1 = a real pixel, 0 = padding), ``extra`` variants."""
    _check_args(threshold, num_bins)
    extra = _check_extra(extra, border_px, 0, num_bins)
    state = _localization_update(probs, masks, threshold, num_bins, valid, extra, border_px)
    return _localization_compute(state, threshold, extra)


class LocalizationMetrics(Metric):
    """Pixel- and image-level splicing-localization metrics at a fixed threshold (see module docstring).

    ``update(probs, masks, valid=None)``: probs (B, H, W) or (B, 1, H, W), P(tampered) per pixel in [0, 1];
    masks the same shape with values {0, 1} (1 = tampered); valid the same shape, 1 = a real pixel, 0 =
    padding (left out of everything). ``compute()`` returns float64 scalars: ``pixel_f1``,
    ``pixel_iou``, ``pixel_mcc``, ``pixel_auroc`` (means over tampered images), their ``*_global`` versions
    over all pixels, ``image_auroc`` (exact; NaN with one class), ``image_bacc`` (image score = max pixel
    probability, label = mask has a positive pixel), ``n_images``, ``n_tampered``, ``n_pixel_auroc_skipped``,
    and ``extra/<name>`` for each of ``extra``.

    Memory is flat in the number of updates except the per-image "cat" lists: one float per image, and with
    ``per_image`` (needed by :meth:`intervals`; implied by ``extra``) a row of about 10 floats and a
    ``hist_bins``-bin histogram pair per image.

    Args:
        threshold, num_bins: the decision threshold and the AUROC histogram bins.
        extra: variants of :data:`~forgery.metrics.options.EXTRA_VARIANTS`; border_px: k of ``border_f1``.
        per_image: keep the per-image rows for bootstrap intervals.
        hist_bins: per-image histogram bins (a divisor of ``num_bins``; None: :func:`default_hist_bins`; 0:
            none, so no ``pixel_auroc_global`` interval). Only with ``per_image``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        threshold: float = 0.5,
        num_bins: int = 1000,
        extra: Sequence[str] = (),
        border_px: int = 8,
        per_image: bool = False,
        hist_bins: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _check_args(threshold, num_bins)
        self.threshold = float(threshold)
        self.num_bins = num_bins
        if hist_bins is None:
            hist_bins = default_hist_bins(num_bins) if per_image else 0
        self.extra = _check_extra(extra, border_px, hist_bins, num_bins)
        self.border_px = border_px
        self.keep_per_image = bool(per_image or self.extra)
        self.hist_bins = hist_bins if per_image else 0
        for name in ("tp", "fp", "fn", "tn", *_COUNT_STATES):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("hist_pos", "hist_neg"):
            self.add_state(name, torch.zeros(num_bins, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("sum_f1", "sum_iou", "sum_mcc", "sum_auroc", "sum_f1_all"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in self._cat_states:
            self.add_state(name, [], dist_reduce_fx="cat")

    @property
    def _cat_states(self) -> tuple[str, ...]:
        names = _CAT_STATES + (("per_image",) if self.keep_per_image else ())
        return names + (("image_hist",) if self.hist_bins else ())

    def update(self, probs: Tensor, masks: Tensor, valid: Tensor | None = None) -> None:
        """Accumulate a batch: probs and masks (B, H, W) or (B, 1, H, W), optional valid of the same shape."""
        batch = _localization_update(
            probs,
            masks,
            self.threshold,
            self.num_bins,
            valid,
            self.extra,
            self.border_px,
            self.keep_per_image,
            self.hist_bins,
        )
        for name in (*_SUM_STATES, *_COUNT_STATES):
            setattr(self, name, getattr(self, name) + batch[name])
        for name in self._cat_states:
            getattr(self, name).append(batch[name])

    def _consolidate(self) -> None:
        """Each per-image list state as one tensor, its batch chunks freed: the states are then held once,
        not twice (chunks and their concatenation) while the metrics and intervals are computed."""
        for name in self._cat_states:
            value = getattr(self, name)
            if isinstance(value, list) and len(value) > 1:
                setattr(self, name, [dim_zero_cat(value)])

    def _state(self) -> dict[str, Tensor]:
        state = {name: getattr(self, name) for name in (*_SUM_STATES, *_COUNT_STATES)}
        dtypes = {"image_scores": torch.float64, "per_image": torch.float64}
        for name in self._cat_states:
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                state[name] = torch.zeros(0, dtype=dtypes.get(name, torch.long), device=self.device)
            elif isinstance(value, Tensor) and value.ndim == 1:
                state[name] = value  # gathered across processes
            elif isinstance(value, list) and len(value) == 1 and value[0].ndim == 1:
                state[name] = value[0]  # consolidated (or one batch): no copy
            else:
                state[name] = dim_zero_cat(value)
        return state

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset (NaN where undefined)."""
        self._consolidate()
        return _localization_compute(self._state(), self.threshold, self.extra)

    def intervals(self, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, bs.Interval]:
        """Percentile bootstrap intervals (resampling images) of every metric of :meth:`compute` except the
        counts, over everything seen (gathered across processes, like ``compute``); needs ``per_image``.

        ``pixel_auroc_global`` is resampled from the ``hist_bins``-bin per-image histograms; its interval is
        shifted by (``num_bins``-bin value - ``hist_bins``-bin value), the binning difference, so that it is
        an interval around the reported value. Empty with no image seen.
        """
        if not self.keep_per_image:
            raise ValueError(f"{_WHERE}: intervals() needs LocalizationMetrics(per_image=True)")
        self._consolidate()
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            state = self._state()
        rows = state["per_image"].double().view(-1, len(BASE_COLUMNS) + len(self.extra))
        N = rows.shape[0]
        if N == 0:
            return {}
        hist = state["image_hist"].view(N, 2, self.hist_bins) if self.hist_bins else None
        scores, labels = state["image_scores"].double(), state["image_labels"].long()
        # images in a canonical order (sorted by their data, ties by their histograms), so that the resamples
        # do not depend on the order images arrived in: the same intervals from 1 or k processes, whatever
        # the batch order. The histograms stay where they are (int32, indexed through the order).
        order = bs.canonical_order([*rows.unbind(1), scores, labels], hist)
        rows, scores, labels = rows[order], scores[order], labels[order]
        stat = localization_stat_fn(rows, scores, labels, self.threshold, self.extra, hist, order)
        out = bs.bootstrap_ci(stat, N, n, seed, level, device=rows.device)
        if hist is not None:
            fine = _hist_auroc(state["hist_pos"], state["hist_neg"])
            coarse = bs.auroc_from_histograms(hist[:, 0].sum(0), hist[:, 1].sum(0))
            shift = float(fine - coarse)
            lo, hi = out["pixel_auroc_global"]
            if lo is not None and shift == shift:
                out["pixel_auroc_global"] = (lo + shift, hi + shift)
        return out
