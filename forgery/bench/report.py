"""The benchmark's JSON record: its schema (checked before writing), and the table printed from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "check_schema", "format_table"]

SCHEMA_VERSION = 1

_NUM = (int, float)
_TOP: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "preset": str,
    "created": str,
    "command": str,
    "machine": dict,
    "peak_flops_per_s": dict,
    "steps": list,
    "loaders": list,
    "eval_memory": dict,
    "extraction": (dict, type(None)),
}
_STEP: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "mode": str,
    "batch": int,
    "size": int,
    "precision": str,
    "channels_last": bool,
    "compile": bool,
    "device": str,
    "warmup": int,
    "steps": int,
    "threads": int,
    "params": int,
    "step_s": dict,
    "cpu_s_per_step": _NUM,
    "images_per_s": _NUM,
    "peak_memory_mb": _NUM,
    "memory_kind": str,
    "flops_per_image": (*_NUM, type(None)),
    "achieved_flops_per_s": (*_NUM, type(None)),
    "fraction_of_peak": (*_NUM, type(None)),
}
_LOADER: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "images": int,
    "size": int,
    "batch_size": int,
    "images_per_s_per_worker": _NUM,
}
_OFFICIAL: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "kind": str,
    "batch": int,
    "size": int,
    "rounds": int,
    "official_s": dict,
    "ours_s": dict,
    "official_cpu_s": dict,
    "ours_cpu_s": dict,
    "ratio_wall": dict,
    "ratio_cpu": dict,
    "official_images_per_s": _NUM,
    "ours_images_per_s": _NUM,
}
_EVAL: dict[str, type | tuple[type, ...]] = {
    "task": str,
    "images": int,
    "size": int,
    "peak_memory_mb": _NUM,
    "memory_kind": str,
}


def _check(record: Any, fields: Mapping[str, Any], where: str, problems: list[str]) -> None:
    if not isinstance(record, dict):
        problems.append(f"{where}: expected an object, got {type(record).__name__}")
        return
    for key, kind in fields.items():
        if key not in record:
            problems.append(f"{where}: missing {key!r}")
        elif isinstance(record[key], bool) and kind in (int, _NUM) or not isinstance(record[key], kind):
            problems.append(f"{where}.{key}: expected {kind}, got {type(record[key]).__name__}")


def check_schema(payload: Mapping[str, Any]) -> None:
    """Raises ValueError listing every missing or mistyped field of a benchmark record."""
    problems: list[str] = []
    _check(payload, _TOP, "bench", problems)
    if payload.get("schema_version") not in (None, SCHEMA_VERSION):
        problems.append(f"bench.schema_version: {payload.get('schema_version')} is not {SCHEMA_VERSION}")
    for i, step in enumerate(payload.get("steps") or []):
        _check(step, _STEP, f"steps[{i}]", problems)
        times = step.get("step_s") if isinstance(step, dict) else None
        if isinstance(times, dict):
            for key in ("median", "min", "max"):
                if not isinstance(times.get(key), _NUM):
                    problems.append(f"steps[{i}].step_s.{key}: missing or not a number")
        if isinstance(step, dict) and step.get("mode") not in ("train", "infer"):
            problems.append(f"steps[{i}].mode: {step.get('mode')!r} is not train or infer")
    for i, loader in enumerate(payload.get("loaders") or []):
        _check(loader, _LOADER, f"loaders[{i}]", problems)
    ev = payload.get("eval_memory")
    if isinstance(ev, dict):
        for i, run in enumerate(ev.get("runs", [])):
            _check(run, _EVAL, f"eval_memory.runs[{i}]", problems)
        if not isinstance(ev.get("growth"), dict):
            problems.append("eval_memory.growth: missing")
    ex = payload.get("extraction")
    if isinstance(ex, dict) and not isinstance(ex.get("frames_per_s_per_worker"), (*_NUM, type(None))):
        problems.append("extraction.frames_per_s_per_worker: missing or not a number")
    for i, v in enumerate((ex.get("videos") or []) if isinstance(ex, dict) else []):
        if not isinstance(v, dict) or not isinstance(v.get("frames_per_s_per_worker"), _NUM):
            problems.append(f"extraction.videos[{i}].frames_per_s_per_worker: missing or not a number")
    # optional (records before it have none): the comparison with the official code
    off = payload.get("official")
    if off is not None:
        if not isinstance(off, dict) or not isinstance(off.get("runs"), list):
            problems.append("official: expected an object with a list of runs")
        else:
            for i, run in enumerate(off["runs"]):
                _check(run, _OFFICIAL, f"official.runs[{i}]", problems)
                for key in (
                    "official_s",
                    "ours_s",
                    "official_cpu_s",
                    "ours_cpu_s",
                    "ratio_wall",
                    "ratio_cpu",
                ):
                    spread = run.get(key) if isinstance(run, dict) else None
                    if isinstance(spread, dict) and not all(
                        isinstance(spread.get(k), _NUM) for k in ("median", "min", "max")
                    ):
                        problems.append(
                            f"official.runs[{i}].{key}: median / min / max missing or not numbers"
                        )
            if not isinstance(off.get("skipped", []), list):
                problems.append("official.skipped: expected a list")
    if problems:
        raise ValueError("benchmark record does not follow schema v1:\n  " + "\n  ".join(problems))


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(payload: Mapping[str, Any]) -> str:
    """Markdown tables of a benchmark record (steps, loaders, evaluation memory, extraction, the official
    code)."""
    m = payload["machine"]
    lines = [
        f"# forgery-bench `{payload['preset']}` — {payload['created']}",
        "",
        f"`{payload['command']}`",
        "",
        f"torch {m['torch']}, {m['device']} ({m.get('gpu') or m['cpu']}), {m['threads']} threads."
        + (
            " Peak "
            + ", ".join(f"{k} matmul {v / 1e9:.0f} GFLOP/s" for k, v in payload["peak_flops_per_s"].items())
            if payload["peak_flops_per_s"]
            else ""
        ),
        "",
        *([str(payload["notes"]), ""] if payload.get("notes") else []),
        "| case | mode | batch x size | precision | channels-last | compile | device "
        "| step s median (min-max) | CPU s/step | img/s | peak MB | GFLOP/img | GFLOP/s | % peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in payload["steps"]:
        t = s["step_s"]
        gf = None if s["flops_per_image"] is None else s["flops_per_image"] / 1e9
        gfs = None if s["achieved_flops_per_s"] is None else s["achieved_flops_per_s"] / 1e9
        frac = None if s["fraction_of_peak"] is None else 100 * s["fraction_of_peak"]
        lines.append(
            f"| {s['label']} | {s['mode']} | {s['batch']} x {s['size']} | {s['precision']} | "
            f"{'yes' if s['channels_last'] else 'no'} | {'yes' if s['compile'] else 'no'} | {s['device']} | "
            f"{t['median']:.3f} ({t['min']:.3f}-{t['max']:.3f}) | {s['cpu_s_per_step']:.3f} | "
            f"{s['images_per_s']:.2f} | "
            f"{s['peak_memory_mb']:.0f} {'RSS' if s['memory_kind'] == 'rss' else 'GPU'} | {_f(gf)} | "
            f"{_f(gfs, 1)} | {_f(frac, 0)} |"
        )
    if payload["loaders"]:
        lines += ["", "| loader | images | size | img/s per worker |", "|---|---|---|---|"]
        for ld in payload["loaders"]:
            lines.append(
                f"| {ld['name']} | {ld['images']} | {ld['size']} | {ld['images_per_s_per_worker']:.1f} |"
            )
    ev = payload["eval_memory"]
    if ev.get("runs"):
        lines += ["", "| evaluation | images | size | peak MB |", "|---|---|---|---|"]
        for r in ev["runs"]:
            lines.append(f"| {r['task']} | {r['images']} | {r['size']} | {r['peak_memory_mb']:.0f} |")
        for task, g in ev["growth"].items():
            spans = g.get("spans") or []
            steps = "; ".join(
                f"{s['images'][0]} -> {s['images'][1]}: {s['growth_mb']:+.1f} MB "
                f"({s['growth_mb_per_1000_images']:+.2f} per 1000)"
                for s in spans
            )
            lines.append(
                f"\n{task}: {g['growth_mb']:+.1f} MB from {g['images_min']} to {g['images_max']} images "
                f"({g['growth_mb_per_1000_images']:+.2f} MB per 1000)"
                + (f"; {steps}" if len(spans) > 1 else "")
            )
    ex = payload.get("extraction")
    if ex:
        lines += [
            "",
            "Face extraction, generated 1080p video (MPEG-4 part 2, one large face on a still background; "
            "real H.264 video decodes slower, see the table of videos when given): "
            f"{_f(ex.get('frames_per_s_per_worker'), 1)} frames/s per worker, "
            f"{_f(ex.get('frames_per_cpu_s'), 1)} per CPU-second ({ex.get('frames_sampled')} frames, "
            f"{ex.get('frames_with_face')} with a face; the median of {ex.get('repeats', 1)} runs; "
            f"{ex.get('measured_by')})",
        ]
        if ex.get("videos"):
            lines += [
                "",
                "| video | size | frames/s per worker | per CPU-second | with a face | decode s | detect s |",
                "|---|---|---|---|---|---|---|",
            ]
            for v in ex["videos"]:
                lines.append(
                    f"| {Path(v['video']).name} | {v.get('width')}x{v.get('height')} "
                    f"| {_f(v.get('frames_per_s_per_worker'), 1)} | {_f(v.get('frames_per_cpu_s'), 1)} "
                    f"| {v.get('frames_with_face')}/{v.get('frames_sampled')} | {_f(v.get('decode_s'))} "
                    f"| {_f(v.get('detect_s'))} |"
                )
    off = payload.get("official")
    if off and (off.get("runs") or off.get("skipped")):
        lines += [
            "",
            "Against the official code (forgery.bench.official; each round runs one official training step "
            "and one of ours in the same process, alternating which goes first; ratio = official time / "
            "ours, median (range) over the rounds):",
        ]
        if off.get("runs"):
            lines += [
                "",
                "| case | batch x size | official s/step (CPU s) | ours s/step (CPU s) | CPU-time ratio "
                "| wall-time ratio | img/s official vs ours | official commit |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in off["runs"]:
                rc, rw = r["ratio_cpu"], r["ratio_wall"]
                commit = (r.get("official_commit") or "-")[:7]
                lines.append(
                    f"| {r['label']} ({r['kind']}) | {r['batch']} x {r['size']} "
                    f"| {r['official_s']['median']:.3f} ({r['official_cpu_s']['median']:.3f}) "
                    f"| {r['ours_s']['median']:.3f} ({r['ours_cpu_s']['median']:.3f}) "
                    f"| **{rc['median']:.2f}** ({rc['min']:.2f}-{rc['max']:.2f}) "
                    f"| {rw['median']:.2f} ({rw['min']:.2f}-{rw['max']:.2f}) "
                    f"| {r['official_images_per_s']:.2f} vs {r['ours_images_per_s']:.2f} | {commit} |"
                )
        for sk in off.get("skipped") or []:
            lines.append(f"\nnot run: {sk['label']} ({sk['reason']})")
    return "\n".join(lines) + "\n"
