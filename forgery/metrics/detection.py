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
- Video level: a video's score aggregates its frames' fake probabilities, ``aggregation`` = ``mean``
  (default) | ``max`` | ``topk_mean`` (mean of the ``topk`` highest; all frames when fewer) | ``median``
  (numpy's: the mean of the two middle values for an even count); its label is its frames' label (a
  ValueError is raised if one video id carries both labels). Video ids are the unique video keys
  (``dataset/method/compression/id``), so frames of different videos are never pooled.
- ``ece`` / ``video_ece`` (with ``ece_bins``): expected calibration error of the fake probability,
  sum over ``ece_bins`` equal-width bins of (n_b / N) |fraction of fakes in b - mean probability in b|, the
  bins of sklearn's ``calibration_curve(strategy="uniform")``.
- Thresholds tuned on validation: :meth:`DetectionMetrics.balanced_thresholds` gives the frame and video
  thresholds that maximise balanced accuracy (:func:`balanced_accuracy_threshold`); carried to the test
  metric (``val_thresholds``) they add ``acc_valthr`` / ``video_acc_valthr`` (accuracy at them, beside the
  fixed-threshold ``acc`` / ``video_acc``) and the thresholds ``valthr`` / ``video_valthr``.
- Bootstrap intervals (:meth:`DetectionMetrics.intervals`) resample videos (all frames of a drawn video
  enter frame metrics with its weight), or frames without video ids.
- Undefined values are NaN, never an exception: AUC / EER / AP with one class present (AP with no fake
  sample), anything over zero samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc
from torchmetrics.utilities import dim_zero_cat

from forgery.errors import ConfigError
from forgery.metrics import bootstrap as bs
from forgery.metrics.options import VIDEO_AGGREGATIONS

__all__ = [
    "DetectionMetrics",
    "detection_metrics",
    "balanced_accuracy_threshold",
    "expected_calibration_error",
    "video_scores",
    "detection_stat_fn",
    "per_method_metrics",
]

_WHERE = "forgery.metrics.detection"


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{_WHERE}: threshold must be a float in [0, 1], got {threshold!r}")


def _check_video_args(aggregation: str, topk: int, ece_bins: int | None) -> None:
    if aggregation not in VIDEO_AGGREGATIONS:
        raise ConfigError(
            f"{_WHERE}: aggregation must be one of {list(VIDEO_AGGREGATIONS)}, got {aggregation!r}"
        )
    if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
        raise ConfigError(f"{_WHERE}: topk must be a positive int, got {topk!r}")
    if ece_bins is not None and (not isinstance(ece_bins, int) or isinstance(ece_bins, bool) or ece_bins < 1):
        raise ConfigError(f"{_WHERE}: ece_bins must be a positive int or None, got {ece_bins!r}")


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


def video_scores(
    probs: Tensor, labels: Tensor, video_ids: Tensor, aggregation: str = "mean", topk: int = 5
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-video score (V,) float64 (``aggregation`` of its frames' probabilities) and label (V,), ordered by
    ascending video id, and each frame's video index (B,)."""
    uniq, inv = torch.unique(video_ids, return_inverse=True)
    V = uniq.numel()
    counts = torch.bincount(inv, minlength=V)
    n_fake = torch.zeros(V, dtype=torch.long, device=probs.device).index_add_(0, inv, labels)
    mixed = (n_fake > 0) & (n_fake < counts)
    if bool(mixed.any()):
        bad = uniq[mixed]
        raise ValueError(
            f"{_WHERE}: {bad.numel()} video id(s) have frames labelled both real and fake "
            f"(first: {bad[:5].tolist()}); a video's frames must share one label"
        )
    if aggregation == "mean":
        score = torch.zeros(V, dtype=torch.float64, device=probs.device).index_add_(0, inv, probs) / counts
    else:
        # frames grouped by video, ascending probability inside each video (two stable sorts)
        by_prob = torch.argsort(probs, stable=True)
        order = by_prob[torch.argsort(inv[by_prob], stable=True)]
        sp = probs[order]
        start = torch.cumsum(counts, 0) - counts
        if aggregation == "max":
            score = sp[start + counts - 1]
        elif aggregation == "median":
            score = (sp[start + (counts - 1) // 2] + sp[start + counts // 2]) / 2
        else:  # topk_mean: the k highest are the last k of each group
            k = counts.clamp(max=topk)
            csum = torch.cat([sp.new_zeros(1), torch.cumsum(sp, 0)])
            score = (csum[start + counts] - csum[start + counts - k]) / k
    return score, (n_fake > 0).long(), inv


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    """ECE of fake probabilities (N,) vs labels (N,) {0, 1} over ``n_bins`` equal-width bins (module
    docstring); NaN for no sample."""
    w = torch.ones(1, probs.numel(), dtype=torch.float64, device=probs.device)
    return bs.weighted_ece(probs.double(), labels, w, n_bins)[0]


def balanced_accuracy_threshold(scores: Tensor, labels: Tensor) -> Tensor:
    """The threshold t in [0, 1] maximising the balanced accuracy of ``score > t`` (float64 scalar).

    Candidates: 0, 1 and the midpoints between consecutive distinct scores (every distinct prediction is
    reached); among equally good ones the closest to 0.5, then the smaller. NaN unless both classes occur.
    """
    scores, labels = scores.double(), labels.long()
    if not _both_classes(labels):
        return _nan(scores.device)
    u = torch.unique(scores)
    edge = scores.new_tensor([0.0, 1.0])
    cand = torch.cat([edge[:1], (u[:-1] + u[1:]) / 2, edge[1:]])
    pos, neg = scores[labels == 1].sort().values, scores[labels == 0].sort().values
    tpr = 1.0 - torch.searchsorted(pos, cand, right=True).double() / pos.numel()  # fakes with score > t
    tnr = torch.searchsorted(neg, cand, right=True).double() / neg.numel()  # reals with score <= t
    bacc = (tpr + tnr) / 2
    best = cand[bacc >= bacc.max() - 1e-12]
    dist = (best - 0.5).abs()
    return best[dist <= dist.min() + 1e-15].min()


def _detection_update(
    probs: Tensor, labels: Tensor, video_ids: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    return _check_inputs(probs, labels, video_ids)


def _detection_compute(
    probs: Tensor,
    labels: Tensor,
    video_ids: Tensor | None,
    threshold: float,
    aggregation: str = "mean",
    topk: int = 5,
    ece_bins: int | None = None,
    val_thresholds: tuple[float, float] | None = None,
) -> dict[str, Tensor]:
    """All metrics from the concatenated frames; video keys only when video_ids is given."""
    dev = probs.device
    out = {
        "acc": _accuracy(probs, labels, threshold),
        "auc": _auroc(probs, labels),
        "eer": _eer(probs, labels),
        "ap": _average_precision(probs, labels),
        "n_frames": torch.tensor(float(labels.numel()), dtype=torch.float64, device=dev),
    }
    if ece_bins is not None:
        out["ece"] = expected_calibration_error(probs, labels, ece_bins)
    if val_thresholds is not None:
        t = float(val_thresholds[0])
        out["acc_valthr"] = _accuracy(probs, labels, t) if t == t else _nan(dev)
        out["valthr"] = torch.tensor(t, dtype=torch.float64, device=dev)
    if video_ids is not None:
        v_probs, v_labels, _ = video_scores(probs, labels, video_ids, aggregation, topk)
        out["video_acc"] = _accuracy(v_probs, v_labels, threshold)
        out["video_auc"] = _auroc(v_probs, v_labels)
        out["n_videos"] = torch.tensor(float(v_labels.numel()), dtype=torch.float64, device=dev)
        if ece_bins is not None:
            out["video_ece"] = expected_calibration_error(v_probs, v_labels, ece_bins)
        if val_thresholds is not None:
            t = float(val_thresholds[1])
            out["video_acc_valthr"] = _accuracy(v_probs, v_labels, t) if t == t else _nan(dev)
            out["video_valthr"] = torch.tensor(t, dtype=torch.float64, device=dev)
    return out


def detection_stat_fn(
    probs: Tensor,
    labels: Tensor,
    video_ids: Tensor | None,
    threshold: float,
    aggregation: str = "mean",
    topk: int = 5,
    ece_bins: int | None = None,
    val_thresholds: tuple[float, float] | None = None,
) -> tuple[Callable[[Tensor], dict[str, Tensor]], int]:
    """The detection metrics as functions of unit weights (for :func:`.bootstrap.bootstrap_ci`), and the
    number of units: videos when ``video_ids`` is given (a frame gets its video's weight), else frames.
    At weights 1 the values equal :func:`detection_metrics` (counts and thresholds left out)."""
    probs, labels = probs.double(), labels.long()
    if video_ids is not None:  # videos in ascending id order, whatever order the frames came in
        v_probs, v_labels, inv = video_scores(probs, labels, video_ids, aggregation, topk)
        n_units = v_labels.numel()
    else:  # frames in a canonical order (by score, then label), independent of their arrival
        order = bs.canonical_order([probs, labels])
        probs, labels = probs[order], labels[order]
        inv, n_units = None, labels.numel()
    frame_ok = (probs > threshold).long() == labels
    t_frame = t_video = float("nan")
    if val_thresholds is not None:
        t_frame, t_video = (float(t) for t in val_thresholds)

    def stat(w: Tensor) -> dict[str, Tensor]:
        wf = w if inv is None else w[:, inv]
        out = {
            "acc": bs.weighted_mean(frame_ok.double(), wf),
            "auc": bs.weighted_auroc(probs, labels, wf),
            "eer": bs.weighted_eer(probs, labels, wf),
            "ap": bs.weighted_average_precision(probs, labels, wf),
        }
        if ece_bins is not None:
            out["ece"] = bs.weighted_ece(probs, labels, wf, ece_bins)
        if val_thresholds is not None and t_frame == t_frame:
            out["acc_valthr"] = bs.weighted_mean(((probs > t_frame).long() == labels).double(), wf)
        if inv is not None:
            out["video_acc"] = bs.weighted_mean(((v_probs > threshold).long() == v_labels).double(), w)
            out["video_auc"] = bs.weighted_auroc(v_probs, v_labels, w)
            if ece_bins is not None:
                out["video_ece"] = bs.weighted_ece(v_probs, v_labels, w, ece_bins)
            if val_thresholds is not None and t_video == t_video:
                out["video_acc_valthr"] = bs.weighted_mean(
                    ((v_probs > t_video).long() == v_labels).double(), w
                )
        return out

    return stat, n_units


def detection_metrics(
    probs: Tensor,
    labels: Tensor,
    video_ids: Tensor | None = None,
    threshold: float = 0.5,
    aggregation: str = "mean",
    topk: int = 5,
    ece_bins: int | None = None,
    val_thresholds: tuple[float, float] | None = None,
) -> dict[str, Tensor]:
    """Functional twin of :class:`DetectionMetrics`: probs (B,) fake probability, labels (B,) {0, 1},
    optional video_ids (B,) int64 (adds ``video_acc``, ``video_auc``, ``n_videos``); ``ece_bins`` adds
    ``ece`` (and ``video_ece``); ``val_thresholds`` (frame, video) adds ``acc_valthr``, ``valthr`` (and
    ``video_acc_valthr``, ``video_valthr``)."""
    _check_threshold(threshold)
    _check_video_args(aggregation, topk, ece_bins)
    p, y, ids = _detection_update(probs, labels, video_ids)
    return _detection_compute(p, y, ids, threshold, aggregation, topk, ece_bins, val_thresholds)


class DetectionMetrics(Metric):
    """Frame- and video-level face-forgery detection metrics (see module docstring).

    ``update(probs, labels, video_ids)``: probs (B,) fake probability in [0, 1], labels (B,) 0 real / 1 fake,
    video_ids (B,) int64 (required when ``video_level``; ignored otherwise). Frames of one video may arrive in
    different batches or ranks: grouping happens in ``compute()``. ``compute()`` returns float64 scalars
    ``acc``, ``auc``, ``eer``, ``ap``, ``n_frames`` and, with ``video_level``, ``video_acc``, ``video_auc``,
    ``n_videos``; with ``ece_bins`` also ``ece`` / ``video_ece``; with ``val_thresholds`` (an attribute, set
    by the module from its validation-tuned thresholds before the test ``compute()``) also ``acc_valthr``,
    ``valthr``, ``video_acc_valthr``, ``video_valthr``. All states are "cat" lists (one entry per frame).

    Args:
        threshold: the fixed decision threshold.
        video_level: group frames by video id.
        aggregation, topk: frame probabilities -> video score (module docstring).
        ece_bins: bins of the expected calibration error (None: not computed).
    """

    full_state_update = False
    higher_is_better = None  # mixed: eer is lower-is-better, the rest higher-is-better
    is_differentiable = False

    def __init__(
        self,
        threshold: float = 0.5,
        video_level: bool = True,
        aggregation: str = "mean",
        topk: int = 5,
        ece_bins: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _check_threshold(threshold)
        _check_video_args(aggregation, topk, ece_bins)
        self.threshold = float(threshold)
        self.video_level = bool(video_level)
        self.aggregation = aggregation
        self.topk = topk
        self.ece_bins = ece_bins
        self._val_thresholds: tuple[float, float] | None = None
        self.add_state("probs", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")
        if self.video_level:
            self.add_state("video_ids", [], dist_reduce_fx="cat")

    @property
    def val_thresholds(self) -> tuple[float, float] | None:
        """(frame, video) thresholds tuned on validation, reported as ``*_valthr`` (None: not reported)."""
        return self._val_thresholds

    @val_thresholds.setter
    def val_thresholds(self, value: tuple[float, float] | None) -> None:
        self._val_thresholds = None if value is None else (float(value[0]), float(value[1]))
        self._computed = None  # compute() caches its result; the thresholds change it

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

    def _frames(self) -> tuple[Tensor, Tensor, Tensor | None]:
        probs = self._cat("probs", torch.float64).double()
        labels = self._cat("labels", torch.long).long()
        ids = self._cat("video_ids", torch.long).long() if self.video_level else None
        return probs, labels, ids

    def _gathered(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every process's frames (like ``compute``, outside it)."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync):
            return self._frames()

    def compute(self) -> dict[str, Tensor]:
        """Metrics over every frame seen since the last reset (NaN where undefined)."""
        probs, labels, ids = self._frames()
        return _detection_compute(
            probs,
            labels,
            ids,
            self.threshold,
            self.aggregation,
            self.topk,
            self.ece_bins,
            self.val_thresholds,
        )

    def frames(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every process's (probs float64, labels long, video_ids long or None) seen since the last reset."""
        return self._gathered()

    def balanced_thresholds(self) -> Tensor:
        """(2,) float64: the frame and the video thresholds maximising balanced accuracy over everything
        seen (:func:`balanced_accuracy_threshold`); NaN where undefined (one class; no video ids)."""
        probs, labels, ids = self._gathered()
        frame = balanced_accuracy_threshold(probs, labels)
        video = _nan(probs.device)
        if ids is not None and ids.numel():
            v_probs, v_labels, _ = video_scores(probs, labels, ids, self.aggregation, self.topk)
            video = balanced_accuracy_threshold(v_probs, v_labels)
        return torch.stack([frame.to(probs.device), video.to(probs.device)])

    def intervals(self, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, bs.Interval]:
        """Percentile bootstrap intervals of the metrics of :meth:`compute` (counts and thresholds left out),
        resampling videos (frames without ``video_level``); empty with no frame seen."""
        probs, labels, ids = self._gathered()
        if labels.numel() == 0:
            return {}
        stat, n_units = detection_stat_fn(
            probs,
            labels,
            ids,
            self.threshold,
            self.aggregation,
            self.topk,
            self.ece_bins,
            self.val_thresholds,
        )
        # frame statistics expand the (k, videos) weights to (k, frames): bound k by the frame count
        chunk = max(1, bs.CHUNK_ELEMENTS * n_units // labels.numel())
        return bs.bootstrap_ci(stat, n_units, n, seed, level, device=probs.device, chunk_elements=chunk)


def per_method_metrics(
    probs: Tensor,
    labels: Tensor,
    video_ids: Tensor,
    video_keys: list[str],
    threshold: float = 0.5,
    aggregation: str = "mean",
    topk: int = 5,
) -> dict[str, dict[str, float]]:
    """Metrics per manipulation method (FF++: Deepfakes, Face2Face, ...): for each method of the fake
    videos, the real frames plus that method's fake frames, through :func:`detection_metrics`.

    ``video_keys[video_id]`` is the unique key ``dataset/method/compression/id``; the method is its second
    part. Empty when the fakes come from fewer than two methods (the whole set is then the only subset).
    """
    methods = [k.split("/")[1] if k.count("/") >= 1 else "" for k in video_keys]
    ids = video_ids.long().cpu()
    method_of = [methods[i] for i in ids.tolist()]
    fake = labels.long().cpu() == 1
    fake_methods = sorted({m for m, f in zip(method_of, fake.tolist()) if f})
    if len(fake_methods) < 2:
        return {}
    out = {}
    for method in fake_methods:
        keep = torch.tensor([(not f) or m == method for m, f in zip(method_of, fake.tolist())])
        values = detection_metrics(
            probs.cpu()[keep], labels.cpu()[keep], ids[keep], threshold, aggregation, topk
        )
        out[method] = {k: (None if math.isnan(float(v)) else float(v)) for k, v in values.items()}
    return out
