"""Data-loader throughput: images per second per worker for splicing JPEGs and face crops.

Tiny temporary datasets are generated (smooth random scenes with noise, saved as the real datasets store
them: JPEG images with PNG masks for splicing, PNG face crops for faces) and read through the real
datasets (:class:`~forgery.data.splicing.dataset.SplicingDataset`,
:class:`~forgery.data.faces.dataset.FaceFrameDataset`) and a ``DataLoader`` with
:func:`~forgery.data.base.collate_skipping`, in this process: decode, resize and collate of
one worker. A DataLoader with ``num_workers=k`` scales this by up to k.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from forgery.data.base import collate_skipping
from forgery.data.faces.dataset import FaceFrameDataset
from forgery.data.faces.extract import encode_png
from forgery.data.faces.sources import INDEX_COLUMNS
from forgery.data.splicing.dataset import SplicingDataset
from forgery.data.splicing.sources import SplicingRecord

__all__ = ["face_crop_throughput", "scene", "splicing_jpeg_throughput"]


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: a smooth random colour field plus sensor-like noise (JPEG-compresses like a photo)."""
    coarse = rng.uniform(0, 255, size=(max(2, height // 32), max(2, width // 32), 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    noisy = smooth + rng.normal(0, 6, size=smooth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _time_loader(loader: DataLoader, images: int, repeats: int) -> dict[str, Any]:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        seen = sum(int(batch["image"].shape[0]) for batch in loader)
        rates.append(seen / (time.perf_counter() - t0))
        if seen != images:
            raise RuntimeError(f"loader benchmark: read {seen} of {images} images")
    return {"images_per_s_per_worker": statistics.median(rates), "runs": rates}


def splicing_jpeg_throughput(
    images: int = 32,
    size: int = 384,
    source_size: tuple[int, int] = (256, 384),
    batch_size: int = 8,
    repeats: int = 3,
    quality: int = 90,
    seed: int = 0,
) -> dict[str, Any]:
    """Splicing loader: ``images`` JPEGs of ``source_size`` (H, W; CASIA's 384 x 256 by default), half of
    them tampered with a PNG mask, resized to ``size`` (the ``resize`` policy) and collated."""
    rng = np.random.default_rng(seed)
    h, w = source_size
    with tempfile.TemporaryDirectory(prefix="forgery-bench-splicing-") as tmp:
        root = Path(tmp)
        records = []
        for i in range(images):
            path = root / f"img_{i:04d}.jpg"
            Image.fromarray(scene(rng, h, w)).save(path, quality=quality)
            mask = None
            if i % 2:
                mask = root / f"img_{i:04d}_gt.png"
                m = np.zeros((h, w), dtype=np.uint8)
                m[h // 4 : h // 2, w // 4 : w // 2] = 255
                Image.fromarray(m).save(mask)
            records.append(SplicingRecord(path.name, path, mask, int(mask is not None), "lum127"))
        dataset = SplicingDataset(records, image_size=size, resize="resize", train=True)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
        result = _time_loader(loader, images, repeats)
    return {
        "name": "splicing_jpeg",
        "images": images,
        "source_size": [h, w],
        "size": size,
        "batch_size": batch_size,
        **result,
    }


def face_crop_throughput(
    images: int = 32, size: int = 380, batch_size: int = 8, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Face loader: ``images`` PNG crops of ``size`` (what ``forgery-faces`` writes) listed in an
    ``index.csv``, read at ``size`` and collated."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="forgery-bench-faces-") as tmp:
        root = Path(tmp)
        rows = []
        for i in range(images):
            key = f"bench/video_{i // 4:03d}"
            (root / key).mkdir(parents=True, exist_ok=True)
            rel = f"{key}/{i % 4:04d}.png"
            (root / rel).write_bytes(encode_png(scene(rng, size, size)))
            rows.append(
                {
                    "key": key,
                    "frame": i % 4,
                    "path": rel,
                    "label": (i // 4) % 2,
                    "dataset": "bench",
                    "method": "na",
                    "compression": "na",
                    "split": "train",
                }
            )
        with (root / "index.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        dataset = FaceFrameDataset(root / "index.csv", split="train", size=size)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
        result = _time_loader(loader, images, repeats)
    return {"name": "face_crop_png", "images": images, "size": size, "batch_size": batch_size, **result}
