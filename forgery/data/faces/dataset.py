"""Torch dataset over face crops: an extraction ``index.csv`` or frame-folder :class:`VideoRecord` lists."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from forgery.data.base import check_on_error
from forgery.data.faces.sources import SPLITS, FaceDataError, VideoRecord, list_frames
from forgery.errors import ConfigError

__all__ = ["FaceFrameDataset", "FrameRow", "read_index"]

log = logging.getLogger(__name__)

INDEX_REQUIRED: tuple[str, ...] = ("key", "frame", "path", "label", "split")


@dataclass(frozen=True)
class FrameRow:
    """One face crop: its file, label (0 real, 1 fake), video key and frame number."""

    path: Path
    label: int
    key: str
    frame: int
    method: str = ""


def read_index(path: str | Path, split: str | None = None) -> list[FrameRow]:
    """Rows of an extraction / faces_synth ``index.csv`` (paths relative to it), optionally of one split."""
    path = Path(path)
    if not path.is_file():
        raise FaceDataError(f"{path}: face index not found (run forgery-faces, or build faces_synth)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not set(INDEX_REQUIRED) <= set(reader.fieldnames):
            raise FaceDataError(f"{path}: needs columns {list(INDEX_REQUIRED)}; has {reader.fieldnames}")
        rows = []
        for n, r in enumerate(reader, 2):
            if r["split"] not in SPLITS:
                raise FaceDataError(f"{path}:{n}: split must be one of {SPLITS}, got {r['split']!r}")
            if split is not None and r["split"] != split:
                continue
            if r["label"] not in ("0", "1"):
                raise FaceDataError(f"{path}:{n}: label must be 0 (real) or 1 (fake), got {r['label']!r}")
            if not r["frame"].isdigit():
                raise FaceDataError(f"{path}:{n}: frame must be a non-negative int, got {r['frame']!r}")
            rows.append(
                FrameRow(
                    path.parent / r["path"], int(r["label"]), r["key"], int(r["frame"]), r.get("method", "")
                )
            )
    return rows


def _rows_from_records(records: Sequence[VideoRecord], split: str | None) -> tuple[list[FrameRow], list[str]]:
    rows, empty = [], []
    for rec in records:
        if split is not None and rec.split != split:
            continue
        if not rec.path.is_dir():
            raise FaceDataError(
                f"{rec.path}: video {rec.key} is not a folder of face crops; extract its faces first "
                "(forgery-faces)"
            )
        frames = list_frames(rec.path)
        if not frames:
            empty.append(rec.key)
        rows += [FrameRow(p, rec.label, rec.key, i, rec.method) for i, p in enumerate(frames)]
    return rows, empty


class FaceFrameDataset(Dataset):
    """Face crops as samples ``{"image", "label", "video_id", "key", "index"}``.

    ``image`` is (3, S, S) float in [0, 1] (after ``transform``, if any), ``label`` long (0 real, 1 fake),
    ``video_id`` long: the position of the video's key in ``video_keys`` (sorted unique keys, so the id is
    stable for a given set of videos) - what video-level metrics group by.

    Args:
        source: an ``index.csv`` (extraction or faces_synth) or records whose paths are folders of crops.
        split: keep only this split (``None``: all).
        transform: per-sample callable on the (3, S, S) tensor.
        balance: oversample the minority class (reals in FF++) to as many frames as the majority, by repeating
            its frame list whole and then a seeded random part of it; the extra count is in ``report``.
        seed: for the balancing draw.
        size: resize crops to S x S (bilinear) when they differ; ``None`` requires equal sizes for batching.
        on_error: ``raise`` (default) stops at an unreadable crop (missing, zero-byte, truncated, not an
            image) naming its file and the problem; ``skip`` returns None for it (logged with the reason),
            which :func:`~forgery.data.base.collate_skipping` drops and counts (``n_skipped``). A
            skipped crop is not replaced by another one, so its batch is that much smaller.
    """

    def __init__(
        self,
        source: str | Path | Sequence[VideoRecord],
        split: str | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        balance: bool = False,
        seed: int = 0,
        size: int | None = None,
        on_error: str = "raise",
    ) -> None:
        if split is not None and split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.on_error = check_on_error(on_error)
        empty: list[str] = []
        if isinstance(source, (str, Path)):
            self.rows = read_index(source, split)
        else:
            self.rows, empty = _rows_from_records(source, split)
        self.transform = transform
        self.size = size
        self.video_keys: list[str] = sorted({r.key for r in self.rows})
        self._video_id = {k: i for i, k in enumerate(self.video_keys)}
        self.labels = torch.tensor([r.label for r in self.rows], dtype=torch.long)
        self.indices: list[int] = list(range(len(self.rows)))
        n_fake = int(self.labels.sum())
        self.report: dict[str, Any] = {
            "frames": len(self.rows),
            "videos": len(self.video_keys),
            "real_frames": len(self.rows) - n_fake,
            "fake_frames": n_fake,
            "empty_videos": empty,
            "oversampled_label": None,
            "oversampled_added": 0,
        }
        if empty:
            log.warning("%d video folder(s) without crops: %s", len(empty), empty[:5])
        if balance:
            self._balance(seed)

    def _balance(self, seed: int) -> None:
        counts = [int((self.labels == c).sum()) for c in (0, 1)]
        minority = int(np.argmin(counts))
        m, big = counts[minority], counts[1 - minority]
        if m == big:
            return
        if m == 0:
            log.warning("balance: no %s frames, nothing to oversample", "real" if minority == 0 else "fake")
            self.report["balance_impossible"] = True
            return
        pool = np.flatnonzero(self.labels.numpy() == minority)
        extra = big - m
        rng = np.random.default_rng(seed)
        add = np.concatenate([np.tile(pool, extra // m), rng.choice(pool, extra % m, replace=False)])
        self.indices += add.tolist()
        self.report.update(oversampled_label=minority, oversampled_added=extra)
        log.info("balance: +%d %s frames (%d -> %d)", extra, "real" if minority == 0 else "fake", m, big)

    @property
    def video_labels(self) -> torch.Tensor:
        """(V,) label of each video in ``video_keys`` order."""
        out = torch.zeros(len(self.video_keys), dtype=torch.long)
        for r in self.rows:
            out[self._video_id[r.key]] = r.label
        return out

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> np.ndarray:
        """The crop at ``index`` as (S, S, 3) uint8 RGB; raises :class:`FaceDataError` naming the file and the
        problem whatever ``on_error`` says (``forgery-data check`` lists every problem through this)."""
        row = self.rows[self.indices[index]]
        try:
            with Image.open(row.path) as im:
                im = im.convert("RGB")
                if self.size is not None and im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.BILINEAR)
                return np.asarray(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise FaceDataError(
                f"{row.path}: cannot read face crop of {row.key} ({_problem(row.path, e)})"
            ) from e

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            arr = self.load(index)
        except FaceDataError as err:
            if self.on_error == "raise":
                raise
            log.warning("skipping face crop %d: %s", index, err)
            return None
        row = self.rows[self.indices[index]]
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "label": torch.tensor(row.label, dtype=torch.long),
            "video_id": torch.tensor(self._video_id[row.key], dtype=torch.long),
            "key": row.key,
            "index": torch.tensor(index, dtype=torch.long),  # seeds per-sample eval perturbations
        }


def _problem(path: Path, err: BaseException) -> str:
    """What is wrong with an unreadable crop, in words."""
    if not path.exists():
        return "file not found"
    if path.is_file() and path.stat().st_size == 0:
        return "zero-byte file"
    return f"{type(err).__name__}: {err}"
