"""Face-forgery detection metrics (MAT protocol): frame-level ACC / AUC / EER / AP and video-level ACC / AUC.

Conventions:

- A frame is predicted fake when ``prob > threshold`` (torchmetrics convention).
- ``auc`` and ``ap`` are torchmetrics' exact ``binary_auroc`` / ``binary_average_precision``, which follow
  sklearn's ``roc_auc_score`` / ``average_precision_score`` (ties form one threshold; AP = sum over
  thresholds of (R_n - R_{n-1}) P_n, no interpolation). torchmetrics computes rates in float32, so values
  agree with sklearn to about 1e-7.
- ``eer``: the ROC is the polyline through (FPR, TPR) at every distinct score threshold, from (0, 0) to
  (1, 1). FPR - FNR (FNR = 1 - TPR) is non-decreasing along it, from -1 to 1; EER is the FPR at the first
  point where it reaches 0, linearly interpolated inside the segment that crosses 0 (where FPR = FNR). This
  equals the common ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` and is also defined on
  vertical ROC segments. A perfectly separable set gives 0.
- Video level: a video's score is the MEAN of its frames' fake probabilities; its label is its frames'
  label (a ValueError is raised if one video id carries both labels).
- Undefined values are NaN, never an exception: AUC / EER / AP with one class present (AP with no fake
  sample), anything over zero samples.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc
from torchmetrics.utilities import dim_zero_cat

__all__ = ["DetectionMetrics", "detection_metrics"]

_WHERE = "forgery.metrics.detection"


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{_WHERE}: threshold must be a float in [0, 1], got {threshold!r}")


def _check_inputs(
    probs: Tensor, labels: Tensor, video_ids: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate and return probs (B,) float64, labels (B,) int64 and video_ids (B,) int64 or None."""
    for name, x in (("probs", probs), ("labels", labels), ("video_ids", video_ids)):
        if x is None and name == "video_ids":
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"{_WHERE}: {name} must be a torch.Tensor, got {type(x)}")
        if x.ndim != 1 or x.shape != probs.shape:
            raise ValueError(
                f"{_WHERE}: {name} must have shape (B,) matching probs; got {name} {tuple(x.shape)}, "
                f"probs {tuple(probs.shape)}"
            )
    if not probs.is_floating_point():
        raise TypeError(f"{_WHERE}: probs must be floating-point fake probabilities, got {probs.dtype}")
    in_range = (probs >= 0) & (probs <= 1)
    if not bool(in_range.all()):
        raise ValueError(
            f"{_WHERE}: probs must be probabilities in [0, 1] (apply sigmoid/softmax to logits), "
            f"found {probs[~in_range][0].item()!r}"
        )
    if labels.dtype != torch.bool:
        binary = (labels == 0) | (labels == 1)
        if not bool(binary.all()):
            raise ValueError(
                f"{_WHERE}: labels must be 0 (real) or 1 (fake), found {labels[~binary][0].item()!r}"
            )
    if video_ids is not None and (video_ids.is_floating_point() or video_ids.dtype == torch.bool):
        raise TypeError(
            f"{_WHERE}: video_ids must be an integer tensor (map string video keys to int64 ids), "
            f"got {video_ids.dtype}"
        )
    ids = None if video_ids is None else video_ids.long()
    return probs.double(), (labels == 1).long(), ids


def _nan(device: torch.device) -> Tensor:
    return torch.tensor(float("nan"), dtype=torch.float64, device=device)


def _both_classes(labels: Tensor) -> bool:
    n_pos = int(labels.sum())
    return 0 < n_pos < labels.numel()


def _auroc(probs: Tensor, labels: Tensor) -> Tensor:
    if not _both_classes(labels):
        return _nan(probs.device)
    return binary_auroc(probs, labels, validate_args=False).double()


def _average_precision(probs: Tensor, labels: Tensor) -> Tensor:
    if not bool(labels.any()):
        return _nan(probs.device)
    return binary_average_precision(probs, labels, validate_args=False).double()


def _eer(probs: Tensor, labels: Tensor) -> Tensor:
    """Equal error rate by linear interpolation on the ROC (see module docstring); NaN with one class."""
    if not _both_classes(labels):
        return _nan(probs.device)
    fpr, tpr, _ = binary_roc(probs, labels, validate_args=False)
    fpr = fpr.double()
    diff = fpr - (1.0 - tpr.double())  # non-decreasing, diff[0] = -1 at (0, 0), diff[-1] = 1 at (1, 1)
    zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
    j = torch.searchsorted(diff, zero).clamp(1, diff.numel() - 1)
    d0, d1 = diff[j - 1], diff[j]
    f0, f1 = fpr[j - 1], fpr[j]
    return (f0 + (-d0) / (d1 - d0) * (f1 - f0)).squeeze(0)


def _accuracy(probs: Tensor, labels: Tensor, threshold: float) -> Tensor:
    if labels.numel() == 0:
        return _nan(probs.device)
    return ((probs > threshold).long() == labels).double().mean()


def _video_scores(probs: Tensor, labels: Tensor, video_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Per-video mean fake probability and label, (V,) each, ordered by ascending video id."""
    uniq, inv = torch.unique(video_ids, return_inverse=True)
    V = uniq.numel()
    counts = torch.bincount(inv, minlength=V)
    mean = torch.zeros(V, dtype=torch.float64, device=probs.device).index_add_(0, inv, probs) / counts
    n_fake = torch.zeros(V, dtype=torch.long, device=probs.device).index_add_(0, inv, labels)
    mixed = (n_fake > 0) & (n_fake < counts)
    if bool(mixed.any()):
        bad = uniq[mixed]
        raise ValueError(
            f"{_WHERE}: {bad.numel()} video id(s) have frames labelled both real and fake "
            f"(first: {bad[:5].tolist()}); a video's frames must share one label"
        )
    return mean, (n_fake > 0).long()


def _detection_update(
    probs: Tensor, labels: Tensor, video_ids: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    return _check_inputs(probs, labels, video_ids)


def _detection_compute(
    probs: Tensor, labels: Tensor, video_ids: Tensor | None, threshold: float
) -> dict[str, Tensor]:
    """All metrics from the concatenated frames; video keys only when video_ids is given."""
    out = {
        "acc": _accuracy(probs, labels, threshold),
        "auc": _auroc(probs, labels),
        "eer": _eer(probs, labels),
        "ap": _average_precision(probs, labels),
        "n_frames": torch.tensor(float(labels.numel()), dtype=torch.float64, device=probs.device),
    }
    if video_ids is not None:
        v_probs, v_labels = _video_scores(probs, labels, video_ids)
        out["video_acc"] = _accuracy(v_probs, v_labels, threshold)
        out["video_auc"] = _auroc(v_probs, v_labels)
        out["n_videos"] = torch.tensor(float(v_labels.numel()), dtype=torch.float64, device=probs.device)
    return out


def detection_metrics(
    probs: Tensor, labels: Tensor, video_ids: Tensor | None = None, threshold: float = 0.5
) -> dict[str, Tensor]:
    """Functional twin of :class:`DetectionMetrics`: probs (B,) fake probability, labels (B,) {0, 1},
    optional video_ids (B,) int64 (adds ``video_acc``, ``video_auc``, ``n_videos``)."""
    _check_threshold(threshold)
    return _detection_compute(*_detection_update(probs, labels, video_ids), threshold)


class DetectionMetrics(Metric):
    """Frame- and video-level face-forgery detection metrics (see module docstring).

    ``update(probs, labels, video_ids)``: probs (B,) fake probability in [0, 1], labels (B,) 0 real / 1 fake,
    video_ids (B,) int64 (required when ``video_level``; ignored otherwise). Frames of one video may arrive in
    different batches or ranks: grouping happens in ``compute()``. ``compute()`` returns float64 scalars
    ``acc``, ``auc``, ``eer``, ``ap``, ``n_frames`` and, with ``video_level``, ``video_acc``, ``video_auc``,
    ``n_videos``. All states are "cat" lists (one entry per frame).
    """

    full_state_update = False
    higher_is_better = None  # mixed: eer is lower-is-better, the rest higher-is-better
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, video_level: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        _check_threshold(threshold)
        self.threshold = float(threshold)
        self.video_level = bool(video_level)
        self.add_state("probs", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")
        if self.video_level:
            self.add_state("video_ids", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, labels: Tensor, video_ids: Tensor | None = None) -> None:
        """Accumulate a batch of frames: probs (B,), labels (B,), video_ids (B,) int64."""
        if self.video_level and video_ids is None:
            raise ValueError(
                f"{_WHERE}: DetectionMetrics(video_level=True).update needs video_ids (B,) int64; "
                "construct with video_level=False for frame-level metrics only"
            )
        p, y, ids = _detection_update(probs, labels, video_ids if self.video_level else None)
        self.probs.append(p)
        self.labels.append(y)
        if self.video_level:
            self.video_ids.append(ids)

    def _cat(self, name: str, dtype: torch.dtype) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return torch.zeros(0, dtype=dtype, device=self.device)
        return dim_zero_cat(value)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over every frame seen since the last reset (NaN where undefined)."""
        probs = self._cat("probs", torch.float64)
        labels = self._cat("labels", torch.long)
        ids = self._cat("video_ids", torch.long) if self.video_level else None
        return _detection_compute(probs, labels, ids, self.threshold)
