"""One table per sweep: each job's ``metrics.json`` (or ``failed.json``) as a row, written after the last job.

``forgery-eval -m ckpt_path=<ckpt> data=casia1,casia2,...`` and ``forgery-train -m ...`` leave in the sweep
directory ``summary.csv``, ``summary.md`` and ``summary.json``: a row per job with its overrides, dataset,
image count, checkpoint, status and metrics (95% intervals beside them where ``metrics.json`` has them);
jobs that differ only by ``seed`` are also summarised as mean, std and a 95% t-interval per metric. Pictures:
``summary_heatmap.png`` (datasets x headline metrics) for evaluation sweeps, ``summary_<perturbation>.png``
(metric vs level) for robustness sweeps, ``summary_roc_pr.png`` (frame and video ROC / PR curves) for
face-forgery evaluations that saved their scores. :class:`SweepSummary` is the Hydra callback that runs it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from forgery.utils.io import atomic_write_text

__all__ = [
    "HEADLINE",
    "SweepSummary",
    "collect_jobs",
    "seed_groups",
    "summarize_sweep",
    "write_summary",
]

log = logging.getLogger(__name__)

# the metrics a table shows first, per task (any other metric follows)
HEADLINE: dict[str, tuple[str, ...]] = {
    "splicing": ("pixel_f1", "pixel_iou", "pixel_mcc", "pixel_auroc", "pixel_auroc_global", "image_auroc"),
    "faces": ("auc", "acc", "eer", "ap", "video_auc", "video_acc"),
}
FAILED = "failed.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in yaml.safe_load(path.read_text()) or []]
    except (OSError, yaml.YAMLError):
        return []


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def collect_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every job of a sweep: ``{job, overrides, status, error, dataset, split, size, checkpoint, metrics,
    intervals, extra}`` (``status`` is ``ok``, ``failed`` or ``no metrics``)."""
    jobs = []
    for job_dir in _job_dirs(Path(sweep_dir)):
        metrics = _read_json(job_dir / "metrics.json")
        failed = _read_json(job_dir / FAILED)
        job: dict[str, Any] = {"job": job_dir.name, "dir": str(job_dir), "overrides": _overrides(job_dir)}
        if metrics is not None:
            job |= {
                "status": "ok",
                "dataset": metrics.get("dataset"),
                "split": metrics.get("split"),
                "size": metrics.get("size"),
                "checkpoint": metrics.get("checkpoint"),
                "metrics": dict(metrics.get("metrics") or {}),
                "intervals": dict(metrics.get("intervals") or {}),
                "per_method": dict(metrics.get("per_method") or {}),
                "perturbation": metrics.get("perturbation"),
            }
            job["metrics"].update({k: v for k, v in (metrics.get("val_metrics") or {}).items()})
        elif failed is not None:
            job |= {"status": "failed", "error": failed.get("error"), "dataset": failed.get("dataset")}
        else:
            job |= {"status": "no metrics"}
        jobs.append(job)
    return jobs


def _varying(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Override keys whose values differ across jobs (the sweep's axes), in first-seen order."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for item in job["overrides"]:
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    counts = {k: sum(any(o.startswith(k + "=") for o in j["overrides"]) for j in jobs) for k in values}
    return [k for k, v in values.items() if len(v) > 1 or counts[k] < len(jobs)]


def _metric_columns(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for job in jobs:
        for key in job.get("metrics", {}):
            if key not in names:
                names.append(key)

    def rank(name: str) -> tuple[int, int, str]:
        stage, _, metric = name.partition("/")
        order = [m for task in HEADLINE.values() for m in task]
        return (
            {"test": 0, "val": 1}.get(stage, 2),
            order.index(metric) if metric in order else len(order),
            name,
        )

    return sorted(names, key=rank)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def seed_groups(jobs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Jobs that differ only by ``seed``, with at least two successful runs: per metric the mean, the
    sample std and a 95% t-interval of the mean (``{group, seeds, n, stats: {metric: {...}}}``)."""
    from forgery.metrics.bootstrap import summarize_seeds

    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for job in jobs:
        if job["status"] != "ok":
            continue
        key = tuple(o for o in job["overrides"] if not o.startswith("seed="))
        groups.setdefault(key, []).append(job)
    out = []
    for key, members in groups.items():
        seeds = [o.partition("=")[2] for j in members for o in j["overrides"] if o.startswith("seed=")]
        if len(members) < 2 or len(set(seeds)) < len(members):
            continue
        runs = [
            {c: j["metrics"].get(c) for c in columns if isinstance(j["metrics"].get(c), (int, float))}
            for j in members
        ]
        table = {
            col: {"mean": st["mean"], "std": st["std"], "ci95": st["interval"], "n": st["n"]}
            for col, st in summarize_seeds(runs).items()
            if st["interval"] is not None
        }
        out.append({"group": " ".join(key), "seeds": seeds, "n": len(members), "stats": table})
    return out


def summarize_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """The summary of a sweep directory as a dict (rows, columns, seed groups); see :func:`write_summary`."""
    jobs = collect_jobs(sweep_dir)
    axes = _varying(jobs)
    columns = _metric_columns(jobs)
    rows = []
    for job in jobs:
        row = {
            "job": job["job"],
            **{axis: _axis_value(job["overrides"], axis) for axis in axes},
            "dataset": job.get("dataset"),
            "images": job.get("size"),
            "status": job["status"] if job["status"] != "failed" else f"failed: {job.get('error')}",
            "checkpoint": job.get("checkpoint"),
            "config": str(Path(job["dir"]) / ".hydra" / "config.yaml"),
        }
        for col in columns:
            row[col] = job.get("metrics", {}).get(col)
            if col in job.get("intervals", {}):
                row[f"{col} 95% CI"] = job["intervals"][col]
        # computed but undefined (NaN, written as null: e.g. image AUC when every image is tampered)
        row["undefined"] = [c for c in columns if c in job.get("metrics", {}) and row[c] is None]
        rows.append(row)
        for method, metrics in sorted(job.get("per_method", {}).items()):
            names = {c: c.partition("/")[2] for c in columns}  # per-method metrics are stored without a stage
            rows.append(
                {
                    "job": job["job"],
                    **{axis: _axis_value(job["overrides"], axis) for axis in axes},
                    "dataset": f"{job.get('dataset')}/{method}",
                    "images": metrics.get("n_frames"),
                    "status": "ok (subset: reals + this method's fakes)",
                    "checkpoint": job.get("checkpoint"),
                    **{c: metrics.get(n) for c, n in names.items()},
                    "undefined": [c for c, n in names.items() if n in metrics and metrics[n] is None],
                }
            )
    return {
        "sweep_dir": str(sweep_dir),
        "axes": axes,
        "columns": columns,
        "rows": rows,
        "jobs": jobs,
        "seeds": seed_groups(jobs, columns),
    }


def _axis_value(overrides: Sequence[str], axis: str) -> str | None:
    for item in overrides:
        key, _, value = item.partition("=")
        if key == axis:
            return value
    return None


def _header(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    header: list[str] = []
    for row in rows:
        for key in row:
            if key not in header:
                header.append(key)
    return header


def _md_columns(summary: Mapping[str, Any]) -> list[str]:
    """The Markdown table's metric columns: the headline test metrics present (the CSV/JSON hold all)."""
    cols = summary["columns"]
    head = [f"{stage}/{m}" for stage in ("test", "val") for task in HEADLINE.values() for m in task]
    chosen = [c for c in dict.fromkeys(head) if c in cols and c.startswith("test/")]
    return chosen or [c for c in dict.fromkeys(head) if c in cols]


def _markdown(summary: Mapping[str, Any]) -> str:
    rows, axes = summary["rows"], summary["axes"]
    metrics = _md_columns(summary)
    ckpts = {r.get("checkpoint") for r in rows if r.get("checkpoint")}
    lines = [f"# Sweep summary: {summary['sweep_dir']}", ""]
    if len(ckpts) == 1:
        lines += [f"Checkpoint: `{ckpts.pop()}`", ""]
    lines += ["95% bootstrap intervals in brackets where the run computed them.", ""]
    if any(r.get("undefined") for r in rows):
        lines += ["n/a: undefined on that data (e.g. an AUC where only one class occurs).", ""]
    header = [
        "job",
        *axes,
        "dataset",
        "images",
        "tampered",
        *[m.partition("/")[2] for m in metrics],
        "status",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["job"],
            *[_short(row.get(a)) for a in axes],
            _fmt(row.get("dataset")),
            _fmt(row.get("images")),
        ]
        cells.append(_fmt(row.get("test/n_tampered")))
        for m in metrics:
            value, ci = row.get(m), row.get(f"{m} 95% CI")
            text = "n/a" if m in row.get("undefined", ()) else _fmt(value)
            if isinstance(ci, list) and len(ci) == 2 and value is not None:
                text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            cells.append(text)
        cells.append(_fmt(row.get("status")))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    for group in summary["seeds"]:
        lines += [
            "",
            f"## Seeds {', '.join(group['seeds'])} of `{group['group'] or '(no other override)'}`",
            "",
        ]
        lines += ["| metric | mean | std | 95% t-interval | n |", "|---|---|---|---|---|"]
        for metric, st in group["stats"].items():
            lo, hi = st["ci95"]
            cells = [metric, _fmt(st["mean"]), _fmt(st["std"]), f"[{_fmt(lo)}, {_fmt(hi)}]", str(st["n"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    """An override value for a table cell: paths shortened to their last component."""
    text = _fmt(value)
    return text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    header = _header(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return buf.getvalue()


def write_summary(sweep_dir: str | Path, log_to_wandb: bool = False) -> dict[str, Path]:
    """Writes ``summary.{csv,md,json}`` and the pictures into ``sweep_dir``; returns their paths."""
    from forgery.utils import plots

    sweep_dir = Path(sweep_dir)
    summary = summarize_sweep(sweep_dir)
    written = {
        "csv": atomic_write_text(sweep_dir / "summary.csv", _csv(summary["rows"])),
        "md": atomic_write_text(sweep_dir / "summary.md", _markdown(summary)),
        "json": atomic_write_text(
            sweep_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n"
        ),
    }
    written |= plots.summary_pictures(summary, sweep_dir)
    if log_to_wandb:
        _log_wandb(summary, written)
    return written


def _log_wandb(summary: Mapping[str, Any], written: Mapping[str, Path]) -> None:
    """Sends the table and the pictures to W&B as one ``summary`` run (best effort: a warning on failure)."""
    try:
        import wandb

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "forgery"),
            name=f"summary-{Path(summary['sweep_dir']).name}",
            job_type="summary",
            dir=summary["sweep_dir"],
        )
        header = _header(summary["rows"])
        table = wandb.Table(columns=header, data=[[_fmt(r.get(k)) for k in header] for r in summary["rows"]])
        run.log(
            {"summary/table": table}
            | {f"summary/{k}": wandb.Image(str(p)) for k, p in written.items() if str(p).endswith(".png")}
        )
        run.finish()
    except Exception as err:  # noqa: BLE001 - W&B is optional here; the files are written already
        log.warning("sweep summary not sent to W&B: %s", err)


def _wandb_on(config: DictConfig) -> bool:
    if os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return False
    loggers = config.get("logger") or {}
    return any("Wandb" in str((lg or {}).get("_target_", "")) for lg in loggers.values())


class SweepSummary(Callback):
    """Hydra callback: after the last job of a multirun, writes the sweep summary (and prints where)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        written = write_summary(sweep_dir, log_to_wandb=_wandb_on(config))
        print(f"sweep summary: {written['md']} (also .csv, .json{_pictures(written)})", flush=True)


def _pictures(written: Mapping[str, Path]) -> str:
    pngs = [p.name for p in written.values() if str(p).endswith(".png")]
    return (", " + ", ".join(pngs)) if pngs else ""
