"""Bootstrap confidence intervals from per-sample scores, and the summary of a seed sweep.

A resample draws the N units (images, or videos) with replacement. It is represented by its count vector
w (N,): how often each unit was drawn. Every statistic is then a function of weights: a per-image mean is
sum(w v) / sum(w), a confusion matrix is w @ per-image counts, an AUROC is the ROC of the weighted scores.
One (n, N) count matrix, drawn once, serves every metric of a stage, so all intervals come from the same
resamples, and a statistic evaluated at w = 1 is the metric itself (the tests check this).

Intervals are percentile intervals: the (1 - level) / 2 and (1 + level) / 2 quantiles (linear interpolation,
numpy's default) of the resampled values. Resamples in which a metric is undefined (e.g. no tampered image
drawn, one class only for an AUROC) are left out of that metric's quantiles; a metric undefined in every
resample gets ``(None, None)``.

The draws come from ``numpy.random.default_rng(seed)``, generated chunk by chunk in row order, so the
resamples depend on (seed, n, N) only, not on the device or the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from forgery.errors import ConfigError

__all__ = [
    "bootstrap_ci",
    "bootstrap_values",
    "percentile_interval",
    "resample_counts",
    "summarize_seeds",
    "auroc_from_histograms",
    "weighted_mean",
    "weighted_sum",
    "canonical_order",
    "weighted_auroc",
    "weighted_average_precision",
    "weighted_eer",
    "weighted_balanced_accuracy",
    "weighted_ece",
    "ece_bin_index",
]

_WHERE = "forgery.metrics.bootstrap"
CHUNK_ELEMENTS = 1 << 20  # count-matrix entries per chunk (8 MiB in float64; the working set is ~10x that)

Interval = tuple[float | None, float | None]


def _check_spec(n: int, seed: int, level: float) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{_WHERE}: the number of resamples n must be a positive int, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{_WHERE}: seed must be a non-negative int, got {seed!r}")
    if not isinstance(level, float) or not 0.0 < level < 1.0:
        raise ConfigError(f"{_WHERE}: level must be a float in (0, 1), e.g. 0.95, got {level!r}")


def resample_counts(
    n_units: int, n: int, seed: int, chunk_elements: int = CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yields (k, n_units) int64 count matrices, n rows in all: row r counts how often each unit is drawn in
    resample r (n_units draws with replacement). Equal to ``rng.integers(0, n_units, (n, n_units))`` binned
    per row, whatever ``chunk_elements``."""
    if n_units < 1:
        raise ValueError(f"{_WHERE}: nothing to resample (0 units)")
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_elements // n_units)
    done = 0
    while done < n:
        k = min(rows, n - done)
        idx = rng.integers(0, n_units, size=(k, n_units))
        flat = idx + (np.arange(k)[:, None] * n_units)
        yield np.bincount(flat.ravel(), minlength=k * n_units).reshape(k, n_units)
        done += k


def bootstrap_values(
    stat_fn: Callable[[Tensor], Mapping[str, Tensor]],
    n_units: int,
    n: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict[str, Tensor]:
    """The n resampled values (n,) float64 of every statistic ``stat_fn(w)`` returns, w (k, n_units) float64
    counts on ``device``; ``stat_fn`` maps w to a dict of (k,) tensors (NaN where undefined).
    ``chunk_elements`` bounds k * n_units (memory only; the values do not depend on it)."""
    parts: dict[str, list[Tensor]] = {}
    for counts in resample_counts(n_units, n, seed, chunk_elements):
        w = torch.from_numpy(counts).to(device=device, dtype=torch.float64)
        for name, value in stat_fn(w).items():
            parts.setdefault(name, []).append(value.detach().double().cpu())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def percentile_interval(values: Tensor, level: float = 0.95) -> Interval:
    """(lo, hi) percentile interval of the finite entries of ``values`` (n,); (None, None) if none is."""
    v = values.double()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return None, None
    q = torch.tensor([(1.0 - level) / 2.0, (1.0 + level) / 2.0], dtype=torch.float64)
    lo, hi = torch.quantile(v, q).tolist()
    return lo, hi


def bootstrap_ci(
    stat_fn: Callable[[Tensor], Mapping[str, Tensor]],
    n_units: int,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    device: torch.device | str | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict[str, Interval]:
    """Percentile bootstrap interval of every statistic of ``stat_fn`` (see the module docstring).

    Args:
        stat_fn: w (k, n_units) float64 resample counts -> {name: (k,) values}.
        n_units: number of resampled units (images or videos).
        n: resamples; seed: of the draws; level: coverage, e.g. 0.95.
        device: where w is built (the device of the per-sample data).
        chunk_elements: resamples are evaluated k at a time with k * n_units <= chunk_elements (memory).
    """
    _check_spec(n, seed, level)
    values = bootstrap_values(stat_fn, n_units, n, seed, device, chunk_elements)
    return {name: percentile_interval(v, level) for name, v in values.items()}


# ----------------------------------------------------------------------------- weighted statistics
def _nan_like(x: Tensor) -> Tensor:
    return torch.full_like(x, float("nan"))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, NaN where den == 0."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), _nan_like(num))


def weighted_mean(values: Tensor, w: Tensor, select: Tensor | None = None) -> Tensor:
    """(k,) mean of ``values`` (N,) over the selected, finite units, weighted by w (k, N); NaN when no
    selected unit is drawn."""
    v = values.double()
    sel = torch.isfinite(v) if select is None else select.bool() & torch.isfinite(v)
    return _ratio(w @ torch.where(sel, v, torch.zeros_like(v)), w @ sel.double())


def weighted_sum(w: Tensor, values: Tensor, index: Tensor | None = None, block: int = 4096) -> Tensor:
    """``w @ values[index].double()`` (k, C) for w (k, N) and values (N, C) of any dtype, converted and
    gathered ``block`` units at a time, so that no float64 copy of ``values`` is held (e.g. the int32
    per-image histograms). Exact, whatever ``block``, for integer values whose sums stay below 2^53."""
    n = w.shape[1]
    out = torch.zeros(w.shape[0], values.shape[1], dtype=torch.float64, device=w.device)
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        part = values[rows] if index is None else values[index[rows]]
        out.addmm_(w[:, rows], part.to(device=w.device, dtype=torch.float64))
    return out


def _row_hash(values: np.ndarray, block: int = 4096) -> np.ndarray:
    """(N,) uint64 hash of each row of the integer array ``values`` (N, C): a fixed random linear map mod 2^64
    (rows that differ get different hashes but with probability ~2^-64)."""
    mult = np.random.default_rng(values.shape[1]).integers(1, 2**63, size=values.shape[1], dtype=np.uint64)
    mult |= np.uint64(1)
    out = np.empty(len(values), np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, len(values), block):
            part = values[start : start + block].astype(np.int64).view(np.uint64)
            out[start : start + block] = (part * mult).sum(1, dtype=np.uint64)
    return out


def canonical_order(columns: Sequence[Tensor], tie_break: Tensor | None = None) -> Tensor:
    """Indices that sort units by ``columns`` (each (N,); the first the most significant), ties broken by a
    hash of each unit's row of the integer ``tie_break`` (N, C): an order that depends on the units' data
    only, not on the order they arrived in (so the resamples are the same from 1 or k processes). No (N, C)
    float copy is made."""
    keys = [c.detach().cpu().double().numpy() for c in reversed(columns)]  # lexsort: the last key is primary
    if tie_break is not None:
        keys.insert(0, _row_hash(tie_break.detach().cpu().reshape(len(tie_break), -1).numpy()))
    device = columns[0].device if columns else None
    return torch.from_numpy(np.lexsort(keys)).to(device)


def auroc_from_histograms(hist_pos: Tensor, hist_neg: Tensor) -> Tensor:
    """AUROC from score histograms (..., B) of positives / negatives over ascending bins; NaN when a class
    is empty. A negative in bin j beats the positives of higher bins and ties (half) with those of bin j; with
    one bin per distinct score this is the exact (sklearn) AUROC."""
    pos, neg = hist_pos.double(), hist_neg.double()
    n_pos, n_neg = pos.sum(-1), neg.sum(-1)
    pos_above = n_pos.unsqueeze(-1) - pos.cumsum(-1)
    area = (neg * (pos_above + 0.5 * pos)).sum(-1)
    return _ratio(area, n_pos * n_neg)


def _weighted_histograms(scores: Tensor, labels: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Weights of positives / negatives per distinct score, (k, U) each, ascending scores."""
    _, inv = torch.unique(scores, return_inverse=True)
    U = int(inv.max()) + 1 if inv.numel() else 0
    pos_sel = labels.bool()
    k = w.shape[0]
    pos = torch.zeros(k, U, dtype=torch.float64, device=w.device).index_add_(1, inv[pos_sel], w[:, pos_sel])
    neg = torch.zeros(k, U, dtype=torch.float64, device=w.device).index_add_(1, inv[~pos_sel], w[:, ~pos_sel])
    return pos, neg


def weighted_auroc(scores: Tensor, labels: Tensor, w: Tensor) -> Tensor:
    """(k,) exact AUROC of scores (N,) vs labels (N,) {0, 1} with unit weights w (k, N)."""
    return auroc_from_histograms(*_weighted_histograms(scores, labels, w))


def _descending_cumulative(scores: Tensor, labels: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative positive / negative weights at thresholds descending over the distinct scores, (k, U)."""
    pos, neg = _weighted_histograms(scores, labels, w)
    return pos.flip(-1).cumsum(-1), neg.flip(-1).cumsum(-1)


def weighted_average_precision(scores: Tensor, labels: Tensor, w: Tensor) -> Tensor:
    """(k,) average precision (sklearn: sum over thresholds of (R_n - R_{n-1}) P_n); NaN without a drawn
    positive."""
    tp, fp = _descending_cumulative(scores, labels, w)
    n_pos = tp[:, -1:] if tp.numel() else torch.zeros(w.shape[0], 1, dtype=torch.float64, device=w.device)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1e-300), torch.zeros_like(tp))
    d_tp = torch.diff(tp, dim=-1, prepend=torch.zeros_like(tp[:, :1]))
    return _ratio((d_tp * precision).sum(-1), n_pos.squeeze(-1))


def weighted_eer(scores: Tensor, labels: Tensor, w: Tensor) -> Tensor:
    """(k,) equal error rate: along the ROC from (0, 0), the FPR where FPR - FNR first reaches 0, linearly
    interpolated inside the crossing segment (the convention of ``forgery.metrics.detection``); NaN with one
    class drawn."""
    tp, fp = _descending_cumulative(scores, labels, w)
    zero = torch.zeros_like(tp[:, :1])
    tp, fp = torch.cat([zero, tp], -1), torch.cat([zero, fp], -1)
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    ok = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    fpr = fp / n_neg.clamp_min(1e-300)
    diff = (fpr - (1.0 - tp / n_pos.clamp_min(1e-300))).contiguous()
    j = torch.searchsorted(diff, torch.zeros_like(diff[:, :1])).clamp(1, diff.shape[-1] - 1)
    d0, d1 = diff.gather(1, j - 1), diff.gather(1, j)
    f0, f1 = fpr.gather(1, j - 1), fpr.gather(1, j)
    eer = (f0 + (-d0) / (d1 - d0).clamp_min(1e-300) * (f1 - f0)).squeeze(-1)
    return torch.where(ok, eer, _nan_like(eer))


def weighted_balanced_accuracy(preds: Tensor, labels: Tensor, w: Tensor) -> Tensor:
    """(k,) mean recall over the classes drawn (sklearn's balanced_accuracy_score); NaN if nothing drawn."""
    preds, labels = preds.long(), labels.long()
    recalls, present = [], []
    for cls in (0, 1):
        sel = (labels == cls).double()
        den = w @ sel
        recalls.append(
            torch.where(den > 0, (w @ (sel * (preds == cls).double())) / den.clamp_min(1e-300), 0.0)
        )
        present.append((den > 0).double())
    n_present = present[0] + present[1]
    return _ratio(recalls[0] * present[0] + recalls[1] * present[1], n_present)


def ece_bin_index(probs: Tensor, n_bins: int) -> Tensor:
    """Bin of each probability among ``n_bins`` equal-width bins on [0, 1]: (lo, hi], the first [0, hi]
    (sklearn ``calibration_curve(strategy="uniform")``'s binning)."""
    inner = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=probs.device)[1:-1]
    return torch.searchsorted(inner, probs.double().contiguous(), right=False)


def weighted_ece(probs: Tensor, labels: Tensor, w: Tensor, n_bins: int) -> Tensor:
    """(k,) expected calibration error of the fake probability: sum over bins of (n_b / N) |fraction of
    positives in b - mean probability in b|, equal-width bins (:func:`ece_bin_index`); NaN if nothing
    drawn."""
    b = ece_bin_index(probs, n_bins)
    k = w.shape[0]

    def per_bin(v: Tensor) -> Tensor:
        return torch.zeros(k, n_bins, dtype=torch.float64, device=w.device).index_add_(1, b, w * v)

    gap = (per_bin(labels.double()) - per_bin(probs.double())).abs().sum(-1)
    return _ratio(gap, w.sum(-1))


# ------------------------------------------------------------------------------------- seed sweeps
def summarize_seeds(runs: Sequence[Mapping[str, float | None]], level: float = 0.95) -> dict[str, dict]:
    """Summary of one metric dict per seed: per metric ``n`` (runs where it is a finite number), ``mean``,
    ``std`` (sample standard deviation, ddof=1) and ``interval``, the Student-t interval of the mean
    ``mean -/+ t_{n-1, (1+level)/2} * std / sqrt(n)``. ``std`` and ``interval`` are None below two values;
    None / NaN values (undefined metrics) are left out and not counted in ``n``.

    Raises:
        TypeError: a value is neither a number nor None, naming the run and the metric.
    """
    from scipy.stats import t as student_t

    if not isinstance(level, float) or not 0.0 < level < 1.0:
        raise ValueError(f"{_WHERE}: level must be a float in (0, 1), got {level!r}")
    values: dict[str, list[float]] = {}
    for i, run in enumerate(runs):
        for key, value in run.items():
            if value is None:
                values.setdefault(key, [])
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"{_WHERE}: run {i}, metric {key!r}: expected a number or None, got {value!r}"
                )
            values.setdefault(key, [])
            if math.isfinite(value):
                values[key].append(float(value))
    out: dict[str, dict] = {}
    for key in sorted(values):
        v = np.asarray(values[key], dtype=np.float64)
        n = int(v.size)
        entry: dict = {"n": n, "mean": float(v.mean()) if n else None, "std": None, "interval": None}
        if n >= 2:
            std = float(v.std(ddof=1))
            half = float(student_t.ppf((1.0 + level) / 2.0, n - 1)) * std / math.sqrt(n)
            entry.update(std=std, interval=[entry["mean"] - half, entry["mean"] + half])
        out[key] = entry
    return out
