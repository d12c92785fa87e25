"""Pictures of a sweep summary (matplotlib, no display): heatmap, robustness curves, ROC / PR curves."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from forgery.utils.io import atomic_path

__all__ = ["heatmap", "robustness_curves", "roc_pr_curves", "summary_pictures"]

HEADLINE_ORDER = (
    "pixel_f1",
    "pixel_iou",
    "pixel_mcc",
    "pixel_auroc",
    "image_auroc",
    "auc",
    "acc",
    "eer",
    "ap",
    "video_auc",
    "video_acc",
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _label(row: Mapping[str, Any], axes: list[str]) -> str:
    extra = [
        f"{a}={str(row.get(a)).rstrip('/').rsplit('/', 1)[-1]}"
        for a in axes
        if a not in ("data",) and row.get(a) is not None
    ]
    return " ".join([str(row.get("dataset") or row.get("job"))] + extra)


def heatmap(summary: Mapping[str, Any], path: Path) -> Path | None:
    """Rows (dataset [+ sweep axes]) x headline test metrics, values written in the cells."""
    cols = [f"test/{m}" for m in HEADLINE_ORDER if f"test/{m}" in summary["columns"]]
    rows = [r for r in summary["rows"] if any(r.get(c) is not None for c in cols)]
    if not cols or not rows:
        return None
    plt = _pyplot()
    values = np.array([[np.nan if r.get(c) is None else float(r[c]) for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(cols), 0.9 + 0.45 * len(rows)))
    ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), [c.partition("/")[2] for c in cols], rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [_label(r, summary["axes"]) for r in rows])
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not np.isnan(values[i, j]):
                color = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_title("test metrics")
    return _save(fig, path)


def robustness_curves(summary: Mapping[str, Any], sweep_dir: Path) -> dict[str, Path]:
    """One picture per perturbation swept over ``perturb.level``: each headline metric vs the level."""
    if "perturb.level" not in summary["axes"]:
        return {}
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for row in summary["rows"]:
        if row.get("perturb.level") is None or not str(row.get("status", "")).startswith("ok"):
            continue
        kind = str(row.get("perturb") or _perturb_name(summary, row) or "perturbation")
        by_kind.setdefault(kind, []).append(row)
    out = {}
    plt = _pyplot()
    for kind, rows in by_kind.items():
        cols = [f"test/{m}" for m in HEADLINE_ORDER if any(r.get(f"test/{m}") is not None for r in rows)]
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            for c in cols:
                if r.get(c) is not None:
                    series.setdefault(f"{r.get('dataset')} {c.partition('/')[2]}", []).append(
                        (float(r["perturb.level"]), float(r[c]))
                    )
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel(f"{kind} level")
        ax.set_ylabel("metric")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"robustness: {kind}")
        out[f"robustness_{kind}"] = _save(fig, sweep_dir / f"summary_{kind}.png")
    return out


def _perturb_name(summary: Mapping[str, Any], row: Mapping[str, Any]) -> str | None:
    for job in summary["jobs"]:
        if job["job"] == row["job"]:
            pert = job.get("perturbation") or {}
            return pert.get("name") if isinstance(pert, Mapping) else None
    return None


def _read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    keys = np.array([r["video"] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    probs = np.array([float(r["prob"]) for r in rows])
    return keys, labels, probs


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    y = labels[order]
    tps, fps = np.cumsum(y), np.cumsum(1 - y)
    distinct = np.r_[np.diff(scores[order]) != 0, True]
    tpr = np.r_[0, tps[distinct]] / max(tps[-1], 1)
    fpr = np.r_[0, fps[distinct]] / max(fps[-1], 1)
    return fpr, tpr


def _pr(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    y = labels[order]
    tps, fps = np.cumsum(y), np.cumsum(1 - y)
    distinct = np.r_[np.diff(scores[order]) != 0, True]
    precision = tps[distinct] / (tps[distinct] + fps[distinct])
    recall = tps[distinct] / max(tps[-1], 1)
    return np.r_[0, recall], np.r_[1, precision]


def roc_pr_curves(summary: Mapping[str, Any], path: Path) -> Path | None:
    """Frame and video ROC and PR curves of every face-forgery job that saved ``scores.csv``."""
    curves = []
    for job in summary["jobs"]:
        scores = Path(job["dir"]) / "scores.csv"
        if job["status"] == "ok" and scores.is_file():
            keys, labels, probs = _read_scores(scores)
            if len(set(labels.tolist())) < 2:
                continue
            videos = sorted(set(keys.tolist()))
            v_labels = np.array([labels[keys == k][0] for k in videos])
            v_probs = np.array([probs[keys == k].mean() for k in videos])
            curves.append((str(job.get("dataset") or job["job"]), labels, probs, v_labels, v_probs))
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for name, labels, probs, v_labels, v_probs in curves:
        for ax, (y, p, what) in zip(axes[:2], ((labels, probs, "frame"), (v_labels, v_probs, "video"))):
            fpr, tpr = _roc(y, p)
            ax.plot(fpr, tpr, label=name)
            ax.set_title(f"{what} ROC")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        for ax, (y, p, what) in zip(axes[2:], ((labels, probs, "frame"), (v_labels, v_probs, "video"))):
            recall, precision = _pr(y, p)
            ax.plot(recall, precision, label=name)
            ax.set_title(f"{what} PR")
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    return _save(fig, path)


def summary_pictures(summary: Mapping[str, Any], sweep_dir: Path) -> dict[str, Path]:
    """Every picture that applies to this sweep, written into ``sweep_dir``; ``{name: path}``."""
    out: dict[str, Path] = {}
    if (p := heatmap(summary, sweep_dir / "summary_heatmap.png")) is not None:
        out["heatmap"] = p
    out |= robustness_curves(summary, sweep_dir)
    if (p := roc_pr_curves(summary, sweep_dir / "summary_roc_pr.png")) is not None:
        out["roc_pr"] = p
    return out
