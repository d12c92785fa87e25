"""Evaluation memory against dataset size: peak memory of ``Trainer.test`` over n images, for several n.

The module is built from its configs as for training and tested as ``forgery-eval`` tests it (the real
``test_step``, metrics and their ``compute``); images are generated on the fly from their index (nothing
cached), so memory that grows with n is the evaluation's own. No map is kept. What the metrics keep per image
is small (faces: a probability, label and video id per frame; splicing: a row of per-image scores and a
100-bin int32 histogram pair for the bootstrap intervals, ~1 kB), the intervals add ~1 kB per image more
and a working set bounded by :data:`forgery.metrics.bootstrap.CHUNK_ELEMENTS`. The test loop hands the
freed heap back to the OS every ``ForgeryModule.release_every`` batches (0: never) and before the metrics
(:func:`forgery.utils.memory.release_free_memory`); without it the resident set grew by ~12 kB per image,
freed batch tensors kept between the per-image state chunks. :func:`eval_memory_growth` gives the growth
of each span of n.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from forgery.bench.system import PeakMemory, set_threads
from forgery.data.base import collate_skipping
from forgery.modules.base import build_module

__all__ = ["eval_peak_memory", "eval_memory_growth"]


class _GeneratedImages(Dataset):
    """n deterministic random samples of the task's layout, made from their index when asked for."""

    def __init__(self, kind: str, n: int, size: int) -> None:
        self.kind, self.n, self.size = kind, n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(index)
        image = torch.rand(3, self.size, self.size, generator=g)
        label = (index // 10) % 2  # faces: 10 frames per video, one label per video
        if self.kind == "splicing":
            mask = torch.zeros(1, self.size, self.size)
            if label:
                q = self.size // 4
                mask[:, q : 2 * q, q : 2 * q] = 1
            return {
                "image": image,
                "mask": mask,
                "label": torch.tensor(label),
                "index": torch.tensor(index),
                "id": f"bench/{index}",
            }
        return {
            "image": image,
            "label": torch.tensor(label),
            "video_id": torch.tensor(index // 10),
            "key": f"bench/{index // 10}",
        }


def eval_peak_memory(
    model: Mapping[str, Any],
    loss: Mapping[str, Any],
    images: int,
    size: int = 64,
    batch_size: int = 50,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """Peak memory (MB) of testing the module of ``model`` / ``loss`` on ``images`` generated images."""
    set_threads(threads)
    pl.seed_everything(0, workers=False, verbose=False)
    module = build_module(dict(model), dict(loss), None)
    loader = DataLoader(
        _GeneratedImages(module.kind, images, size), batch_size=batch_size, collate_fn=collate_skipping
    )
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    memory = PeakMemory(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        memory.start()
        results = trainer.test(module, dataloaders=loader, verbose=False)
        peak = memory.stop()
    return {
        "task": module.kind,
        "images": images,
        "size": size,
        "batch_size": batch_size,
        "peak_memory_mb": peak,
        "memory_kind": memory.kind,
        "rss_reset": memory.rss_reset if device == "cpu" else None,
        "metrics": sorted(results[0]) if results else [],
    }


def _growth(lo: Mapping[str, Any], hi: Mapping[str, Any]) -> tuple[float, float]:
    growth = hi["peak_memory_mb"] - lo["peak_memory_mb"]
    return growth, growth * 1000 / max(1, hi["images"] - lo["images"])


def eval_memory_growth(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: the peak at the largest n minus the peak at the smallest, in MB and per 1000 images, and the
    same between each two consecutive n (``spans``): memory that stops growing past some n (a working set
    bounded by a chunk size) shows as a flat last span, memory kept per image as a steady one."""
    out: dict[str, dict[str, Any]] = {}
    for task in sorted({r["task"] for r in records}):
        rs = sorted((r for r in records if r["task"] == task), key=lambda r: r["images"])
        growth, per_1000 = _growth(rs[0], rs[-1])
        spans = []
        for lo, hi in zip(rs, rs[1:]):
            g, p = _growth(lo, hi)
            spans.append(
                {"images": [lo["images"], hi["images"]], "growth_mb": g, "growth_mb_per_1000_images": p}
            )
        out[task] = {
            "images_min": rs[0]["images"],
            "images_max": rs[-1]["images"],
            "growth_mb": growth,
            "growth_mb_per_1000_images": per_1000,
            "spans": spans,
        }
    return out
