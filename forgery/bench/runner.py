"""Runs a benchmark preset: step cases, loaders, evaluation memory, face extraction -> one JSON record."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import itertools
import logging
import multiprocessing as mp
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from forgery.bench.evalmem import eval_memory_growth, eval_peak_memory
from forgery.bench.loaders import face_crop_throughput, splicing_jpeg_throughput
from forgery.bench.official import OfficialCase, run_official_case
from forgery.bench.report import SCHEMA_VERSION, check_schema
from forgery.bench.steps import StepCase, run_step_case
from forgery.bench.system import machine_info, matmul_peak, resolve_device, set_threads
from forgery.utils.quiet import quiet_third_party

__all__ = ["expand_cases", "run_bench"]

log = logging.getLogger(__name__)

_MATRIX_KEYS = ("mode", "precision", "channels_last", "compile", "batch", "size")
_DTYPES = {"32-true": "float32", "bf16-mixed": "bfloat16", "16-mixed": "float16"}


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def expand_cases(cases: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Preset cases -> one dict per combination: a list value of ``mode``, ``precision``, ``channels_last``,
    ``compile``, ``batch`` or ``size`` expands into one case per element (in the order given)."""
    out = []
    for label, case in cases.items():
        case = dict(case)
        axes = [(k, list(case[k])) for k in _MATRIX_KEYS if _is_list(case.get(k))]
        for values in itertools.product(*(v for _, v in axes)):
            one = {**case, **dict(zip((k for k, _ in axes), values))}
            one.setdefault("label", case.get("label", label))
            out.append(one)
    return out


def _in_subprocess(fn: Callable[..., dict], *args: Any, **kwargs: Any) -> dict:
    """``fn`` in a fresh spawned process (its own peak RSS, allocator and compile caches)."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=quiet_third_party) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def run_bench(
    spec: Mapping[str, Any],
    cases: Sequence[StepCase],
    eval_models: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]] = (),
    command: str | None = None,
    official: Sequence[OfficialCase] | None = None,
    official_skipped: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The whole benchmark of a preset ``spec`` (its ``loaders``, ``eval_memory``, ``extraction`` sections,
    ``device``, ``threads``, ``isolate``, ``omp_wait_policy``, ``peak_flops``), over already-resolved step
    ``cases``, the (model, loss) configs of ``eval_models`` and the ``official`` comparisons (None: that
    section is off; ``official_skipped``: the cases not run and why); returns the record (schema-checked)."""
    xcfg = spec.get("extraction") or {}
    videos = [Path(str(v)).expanduser() for v in xcfg.get("videos") or []]
    for v in videos:  # before the hour of measurements, not after it
        if not v.is_file():
            raise FileNotFoundError(f"bench.extraction.videos: {v}: no such video file")
    device = resolve_device(spec.get("device", "auto"))
    threads = set_threads(spec.get("threads"))
    isolate = bool(spec.get("isolate", True))
    # OpenMP reads its wait policy when it loads: it reaches the spawned measurements, not this process
    omp_policy = os.environ.get("OMP_WAIT_POLICY")
    if isolate and spec.get("omp_wait_policy"):
        omp_policy = os.environ["OMP_WAIT_POLICY"] = str(spec["omp_wait_policy"])
    run = _in_subprocess if isolate else (lambda fn, *a, **k: fn(*a, **k))

    peaks: dict[str, float] = {}
    for precision in sorted({c.precision for c in cases}) if spec.get("peak_flops", True) else []:
        name = _DTYPES[precision]
        log.info("bench: %s matmul peak on %s", name, device)
        peaks[name] = matmul_peak(device, getattr(torch, name), seconds=float(spec.get("peak_seconds", 1.0)))

    steps = []
    for case in cases:
        log.info(
            "bench: %s %s %dx%d %s cl=%s compile=%s",
            case.label,
            case.mode,
            case.batch,
            case.size,
            case.precision,
            case.channels_last,
            case.compile,
        )
        record = run(run_step_case, case)
        peak = peaks.get(_DTYPES[case.precision])
        ach = record["achieved_flops_per_s"]
        record["fraction_of_peak"] = None if peak is None or ach is None else ach / peak
        steps.append(record)
        log.info(
            "bench: %s -> %.3f s/step, %.2f img/s",
            case.label,
            record["step_s"]["median"],
            record["images_per_s"],
        )

    loaders = []
    lcfg = spec.get("loaders") or {}
    if lcfg.get("splicing"):
        loaders.append(splicing_jpeg_throughput(**lcfg["splicing"]))
    if lcfg.get("faces"):
        loaders.append(face_crop_throughput(**lcfg["faces"]))

    runs = []
    ecfg = dict(spec.get("eval_memory") or {})
    sizes = ecfg.pop("images", [])
    for model, loss in eval_models:
        for n in sizes:
            runs.append(run(eval_peak_memory, model, loss, int(n), device=device, threads=threads, **ecfg))
    eval_memory = {"runs": runs, "growth": eval_memory_growth(runs) if runs else {}}

    extraction = None
    if xcfg:
        from forgery.bench.extraction import extraction_throughput, make_face_video
        from forgery.data.faces.extract import ExtractSettings

        with tempfile.TemporaryDirectory(prefix="forgery-bench-video-") as tmp:
            video = make_face_video(Path(tmp) / "face_1080p.mp4", frames=int(xcfg.get("frames", 60)))
            settings = ExtractSettings(**dict(xcfg.get("settings") or {}))
            repeats = int(xcfg.get("repeats", 1))
            extraction = {
                **run(extraction_throughput, video, settings, repeats),
                "video": "1920x1080 generated",
                "video_frames": int(xcfg.get("frames", 60)),
            }
        # the same measurement on given videos (e.g. a sample of the dataset to extract)
        extraction["videos"] = [
            {**run(extraction_throughput, v, settings, repeats), "video": str(v)} for v in videos
        ]

    comparisons = None
    if official is not None:
        runs = []
        for case in official:
            log.info(
                "bench: official %s (%s) %dx%d, %d rounds",
                case.label,
                case.kind,
                case.batch,
                case.size,
                case.rounds,
            )
            runs.append(run(run_official_case, case))
            log.info(
                "bench: official %s -> CPU-time ratio %.2f, wall %.2f (official / ours)",
                case.label,
                runs[-1]["ratio_cpu"]["median"],
                runs[-1]["ratio_wall"]["median"],
            )
        for s in official_skipped:
            log.info("bench: official %s not run: %s", s["label"], s["reason"])
        comparisons = {"runs": runs, "skipped": [dict(s) for s in official_skipped]}

    payload = {
        "schema_version": SCHEMA_VERSION,
        "preset": str(spec.get("name", "custom")),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "machine": {**machine_info(device), "threads": threads, "omp_wait_policy": omp_policy},
        "peak_flops_per_s": peaks,
        "isolated_processes": isolate,
        "notes": str(spec.get("notes", "")),
        "steps": steps,
        "loaders": loaders,
        "eval_memory": eval_memory,
        "extraction": extraction,
        "official": comparisons,
    }
    check_schema(payload)
    return payload
