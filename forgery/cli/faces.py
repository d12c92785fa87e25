"""``forgery-faces`` (``python -m forgery.cli.faces``): videos -> face crops + index.csv (conf/faces.yaml)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgery.cli import hydra_app
from forgery.data.faces.extract import ExtractSettings, extract_faces, merge_shards
from forgery.data.faces.sources import SPLITS, index_videos
from forgery.errors import ConfigError
from forgery.utils.resolvers import usable_cpus

__all__ = ["cpu_workers", "main", "run"]

log = logging.getLogger(__name__)


def cpu_workers(value: Any) -> int:
    """``workers=``: a count, or ``auto`` (or null): one process per CPU this process may run on (its
    affinity mask, which a SLURM job's or a container's CPU set narrows), at least 1."""
    if value is None or value == "auto":
        return usable_cpus()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"workers must be a whole number of processes or auto, got {value!r}")
    return value


def _options(node: Any) -> dict[str, Any]:
    """A config mapping (``null`` / ``{}`` / ``{k: v}``) as a plain dict."""
    return dict(OmegaConf.to_container(node, resolve=True)) if node else {}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Index ``cfg.data_name``'s split(s) and extract their faces; returns ``{"<dataset>/<split>": report}``.

    For ``data_name=faces_synth`` builds the embedded dataset instead and returns ``{"index_csv": path}``;
    with ``merge=true`` only merges ``out_dir``'s shard part files (``{"<dataset>/<split>": report}``).
    """
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "1")
    if tasks.isdigit() and int(tasks) > 1:
        raise ConfigError(
            f"forgery-faces runs as one task, but this SLURM step has {tasks}: each task would extract the "
            "same videos; use hydra/launcher=slurm_cpu (one task per job) or srun --ntasks=1"
        )
    if cfg.data_name == "faces_synth":
        from forgery.data.faces.synth import build_faces_synth

        path = build_faces_synth(cfg.out_dir, **OmegaConf.to_container(cfg.synth, resolve=True))
        log.info("faces_synth index: %s", path)
        return {"index_csv": str(path)}
    if cfg.get("merge"):
        return merge_shards(cfg.out_dir)
    if cfg.get("root") is None:
        raise ConfigError(f"root= is required for data_name={cfg.data_name}")
    if not Path(cfg.root).exists():
        raise FileNotFoundError(
            f"{cfg.root}: video root of data_name={cfg.data_name} does not exist (root=...)"
        )
    splits = list(SPLITS) if cfg.split == "all" else [cfg.split]
    settings = ExtractSettings(
        frames_per_video=cfg.frames_per_video,
        stride=cfg.stride,
        max_frame=cfg.max_frame,
        scale=float(cfg.scale),
        size=int(cfg.size),
        detector=cfg.detector,
        detector_options=_options(cfg.get("detector_options")),
        detect_max_side=cfg.detect_max_side,
        reject_outliers=bool(cfg.get("reject_outliers", True)),
        contrast_retry=bool(cfg.get("contrast_retry", True)),
        track=cfg.get("track", False),
        batch_size=int(cfg.get("batch_size", 8)),
    )
    workers = cpu_workers(cfg.get("workers", "auto"))
    source = _options(cfg.get("source"))
    # every split is listed before any video is read: split=all on a dataset without, e.g., its test labels
    # fails at once instead of after hours of extracting the training videos
    indexes = [(split, index_videos(cfg.data_name, cfg.root, split, **source)) for split in splits]
    reports = {}
    for split, index in indexes:
        name = f"{cfg.data_name}/{split}"
        reports[name] = extract_faces(
            index,
            cfg.out_dir,
            settings,
            workers=workers,
            overwrite=bool(cfg.overwrite),
            progress=bool(cfg.progress),
            name=name,
            shard=cfg.get("shard"),
            num_shards=int(cfg.get("num_shards", 1)),
        )
    return reports


@hydra_app("faces", prog="forgery-faces")
def main(cfg: DictConfig) -> None:
    """Thin Hydra wrapper around :func:`run`; says where the crops, index and report went."""
    run(cfg)
    out = Path(cfg.out_dir).resolve()
    print(f"forgery-faces: face crops, index.csv and report.json in {out}", flush=True)


if __name__ == "__main__":
    main()
