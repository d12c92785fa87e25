"""Leakage and duplicate audit of a datamodule's train/val/test splits (``forgery-data audit``).

What is looked for (each finding has a ``kind``):

* ``same_file``: one file (resolved path) in two splits, e.g. ``data.test`` naming the training dataset.
* ``same_image``: byte- or pixel-identical images under different names, across splits (leakage) or
  within one split (a duplicate), e.g. a CASIA v1 authentic photo shipped again by CASIA v2 under another
  name.
* ``near_duplicate``: images of two different splits whose perceptual hash (64-bit DCT pHash, see
  :func:`phash`) differs in at most ``threshold`` bits: a re-compressed, resized or lightly edited copy, or
  a tampered image and its authentic host. Only across splits: within a split such pairs are the datasets'
  design (CASIA ships each splice beside its host photo).
* ``identity``: a face identity in more than one split. FF++ keys ``ffpp/<method>/<comp>/<a>`` (a real video
  of actor a) and ``.../<a>_<b>`` (a's video with b's face) carry identities a and b; Celeb-DF ``idA_0003`` /
  ``idA_idB_0003`` carry A (and B); faces_synth's video name is its identity.
* ``video``: crops of one video (one key) in more than one split.
* ``unreadable``: an image the audit could not decode (the audit is then incomplete; ``forgery-data check``
  tells more).

Images are decoded with the readers training uses; face videos contribute ``frames_per_video`` evenly spaced
crops to the image checks (``None``: every crop), while ``video`` and ``identity`` use every crop's key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.fft import dctn

from forgery.data.manifest import SPLIT_ORDER, sample_id
from forgery.data.splicing.io import DataError, load_image
from forgery.errors import ConfigError

__all__ = [
    "AuditSample",
    "KINDS",
    "audit_datamodule",
    "audit_samples",
    "face_identities",
    "hamming",
    "phash",
]

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("same_file", "same_image", "near_duplicate", "identity", "video", "unreadable")


@dataclass(frozen=True)
class AuditSample:
    """One sample of a split: its manifest id, file, label (1 tampered / fake) and video key (faces)."""

    split: str
    id: str
    path: Path
    label: int
    video: str | None = None

    @property
    def name(self) -> str:
        return f"{self.split}:{self.id}"


# ------------------------------------------------------------------------------------------------ hashing
def phash(image: np.ndarray, hash_size: int = 8, highfreq_factor: int = 4) -> np.ndarray:
    """Perceptual hash (the classic DCT pHash, as ``imagehash.phash``): the image in greyscale resized to
    ``hash_size * highfreq_factor`` squared (Lanczos), its 2-D DCT-II, the top-left ``hash_size`` squared
    coefficients, each bit = coefficient > their median. Returns (hash_size ** 2,) bool.

    Robust to re-compression, resizing and small edits (few bits change), while unrelated photos differ in
    about half the bits.
    """
    side = hash_size * highfreq_factor
    grey = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").resize((side, side), Image.LANCZOS)
    coeffs = dctn(np.asarray(grey, dtype=np.float64), type=2, norm=None)[:hash_size, :hash_size]
    return (coeffs > np.median(coeffs)).ravel()


def _pack(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bool -> (N,) uint64."""
    return np.packbits(bits.astype(np.uint8), axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between packed hashes a (N,) and b (M,) uint64 -> (N, M) int."""
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.int64)


@dataclass(frozen=True)
class _Hashes:
    file: str
    pixels: str
    phash: np.ndarray  # (hash_size ** 2,) bool


def _hash_file(path: Path, hash_size: int) -> _Hashes:
    image = load_image(path)
    pixels = hashlib.sha256(f"{image.shape}".encode() + image.tobytes()).hexdigest()
    return _Hashes(hashlib.sha256(path.read_bytes()).hexdigest(), pixels, phash(image, hash_size))


# ------------------------------------------------------------------------------------------------ samples
def audit_samples(datamodule: Any) -> list[AuditSample]:
    """Every sample of every split of a splicing or face datamodule (set up here when it is not yet)."""
    if not datamodule.records:
        datamodule.prepare_data()
        datamodule.setup("fit")
    out = []
    for split in sorted(datamodule.records, key=lambda s: (SPLIT_ORDER + (s,)).index(s)):
        for rec in datamodule.records[split]:
            path = Path(getattr(rec, "image", None) or rec.path)
            out.append(AuditSample(split, sample_id(rec), path, int(rec.label), getattr(rec, "key", None)))
    return out


def _image_subset(samples: Sequence[AuditSample], frames_per_video: int | None) -> list[AuditSample]:
    """Splicing samples, and per (split, video) ``frames_per_video`` evenly spaced crops (None: all)."""
    if frames_per_video is None:
        return list(samples)
    by_video: dict[tuple[str, str], list[AuditSample]] = defaultdict(list)
    out = []
    for s in samples:
        if s.video is None:
            out.append(s)
        else:
            by_video[(s.split, s.video)].append(s)
    for crops in by_video.values():
        n = len(crops)
        k = min(frames_per_video, n)
        picks = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
        out += [crops[i] for i in picks]
    return out


# -------------------------------------------------------------------------------------------- face checks
_CELEBDF = re.compile(r"^(id\d+)(?:_(id\d+))?_\d+$")


def face_identities(key: str) -> tuple[str, ...]:
    """The identities a face video key shows, prefixed by its dataset (``ffpp:004``); () when unknown."""
    parts = key.split("/")
    if len(parts) < 4:
        return ()
    dataset, method, name = parts[0], parts[1], parts[-1]
    if dataset == "ffpp":
        return tuple(f"ffpp:{i}" for i in name.split("_") if i)
    if dataset == "celebdf":
        m = _CELEBDF.match(name)
        if method == "YouTube-real" or not m:
            return ()
        return tuple(f"celebdf:{i}" for i in m.groups() if i)
    if dataset == "faces_synth":
        return (f"faces_synth:{name}",)
    return ()


def _across(groups: Mapping[str, list[AuditSample]], kind: str, what: str) -> list[dict[str, Any]]:
    findings = []
    for label, members in sorted(groups.items()):
        splits = _split_names({s.split for s in members})
        if len(splits) < 2:
            continue
        videos = {sp: sorted({m.video for m in members if m.split == sp}) for sp in splits}
        findings.append(
            {
                "kind": kind,
                "splits": splits,
                "key": label,
                "items": [f"{sp}:{v}" for sp in splits for v in videos[sp]],
                "detail": f"{what} {label} in {', '.join(splits)} "
                + "; ".join(f"{sp}: {len(videos[sp])} video(s)" for sp in splits),
            }
        )
    return findings


def _split_names(splits: Iterable[str]) -> list[str]:
    return sorted(set(splits), key=lambda s: (SPLIT_ORDER + (s,)).index(s))


# ---------------------------------------------------------------------------------------------- the audit
def audit_datamodule(
    datamodule: Any,
    *,
    near_duplicates: bool = True,
    threshold: int = 10,
    hash_size: int = 8,
    frames_per_video: int | None = 4,
) -> dict[str, Any]:
    """Audits the splits of ``datamodule`` (see the module docstring).

    Args:
        datamodule: a splicing or face datamodule, configured as training would use it.
        near_duplicates: compute perceptual hashes (decodes every audited image); False keeps the cheap
            checks (same file, face videos and identities).
        threshold: largest pHash bit distance (of ``hash_size ** 2`` bits) reported as a near duplicate.
        hash_size: pHash side (8: 64-bit hashes).
        frames_per_video: face crops per video used by the image checks (None: all).

    Returns:
        ``{"splits": {split: n}, "checked_images": n, "settings": {...}, "counts": {kind: n},
        "findings": [{"kind", "splits", "items", "detail", ...}]}``; no findings means clean.
    """
    if frames_per_video is not None and int(frames_per_video) < 1:
        raise ConfigError(
            f"audit: frames_per_video must be >= 1 or null (every crop), got {frames_per_video!r}"
        )
    if not 0 <= int(threshold) <= hash_size**2:
        raise ConfigError(f"audit: threshold must lie in [0, {hash_size**2}] bits, got {threshold!r}")
    samples = audit_samples(datamodule)
    findings: list[dict[str, Any]] = []

    by_path: dict[Path, list[AuditSample]] = defaultdict(list)
    for s in samples:
        by_path[s.path.resolve()].append(s)
    for path, members in sorted(by_path.items()):
        splits = _split_names(m.split for m in members)
        if len(splits) > 1:
            findings.append(
                {
                    "kind": "same_file",
                    "splits": splits,
                    "items": sorted({m.name for m in members}),
                    "detail": f"{path} is in {', '.join(splits)}",
                }
            )

    videos: dict[str, list[AuditSample]] = defaultdict(list)
    identities: dict[str, list[AuditSample]] = defaultdict(list)
    for s in samples:
        if s.video is not None:
            videos[s.video].append(s)
            for ident in face_identities(s.video):
                identities[ident].append(s)
    findings += _across(videos, "video", "crops of video")
    findings += _across(identities, "identity", "identity")

    checked = _image_subset(samples, frames_per_video) if near_duplicates else []
    hashes: list[_Hashes] = []
    kept: list[AuditSample] = []
    for i, s in enumerate(checked):
        try:
            hashes.append(_hash_file(s.path, hash_size))
            kept.append(s)
        except (DataError, OSError) as err:
            findings.append(
                {"kind": "unreadable", "splits": [s.split], "items": [s.name], "detail": str(err)}
            )
        if (i + 1) % 1000 == 0:
            log.info("audit: hashed %d / %d images", i + 1, len(checked))
    if kept:
        findings += _identical(kept, hashes)
        findings += _near(kept, hashes, threshold)

    counts = {k: sum(f["kind"] == k for f in findings) for k in KINDS}
    order = {k: i for i, k in enumerate(KINDS)}
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    findings.sort(key=lambda f: (order[f["kind"]], [rank.get(s, 9) for s in f["splits"]], f["items"]))
    return {
        "splits": {sp: len(datamodule.records[sp]) for sp in _split_names(datamodule.records)},
        "checked_images": len(checked),
        "settings": {
            "near_duplicates": near_duplicates,
            "threshold": threshold,
            "hash_bits": hash_size**2,
            "frames_per_video": frames_per_video,
        },
        "counts": counts,
        "findings": findings,
    }


def _identical(samples: list[AuditSample], hashes: list[_Hashes]) -> list[dict[str, Any]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h.pixels].append(i)
    findings = []
    for members in groups.values():
        paths = {samples[i].path.resolve() for i in members}
        if len(paths) < 2:  # one file (possibly in two splits: same_file)
            continue
        splits = _split_names(samples[i].split for i in members)
        same_bytes = len({hashes[i].file for i in members}) == 1
        how = "identical bytes" if same_bytes else "identical pixels, different files"
        where = f"across {', '.join(splits)}" if len(splits) > 1 else f"within {splits[0]}"
        findings.append(
            {
                "kind": "same_image",
                "splits": splits,
                "items": sorted({samples[i].name for i in members}),
                "detail": f"{how}, {where}",
            }
        )
    return findings


def _near(samples: list[AuditSample], hashes: list[_Hashes], threshold: int) -> list[dict[str, Any]]:
    packed = _pack(np.stack([h.phash for h in hashes]))
    pixels = np.array([h.pixels for h in hashes])
    by_split: dict[str, np.ndarray] = {}
    for sp in _split_names(s.split for s in samples):
        by_split[sp] = np.flatnonzero(np.array([s.split == sp for s in samples]))
    names = list(by_split)
    findings = []
    chunk = 4096
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            ia, ib = by_split[names[a]], by_split[names[b]]
            for start in range(0, len(ia), chunk):
                rows = ia[start : start + chunk]
                dist = hamming(packed[rows], packed[ib])
                for r, c in zip(*np.nonzero(dist <= threshold)):
                    i, j = rows[r], ib[c]
                    if pixels[i] == pixels[j]:  # identical: reported as same_image / same_file
                        continue
                    si, sj = samples[i], samples[j]
                    findings.append(
                        {
                            "kind": "near_duplicate",
                            "splits": [si.split, sj.split],
                            "items": [si.name, sj.name],
                            "distance": int(dist[r, c]),
                            "detail": f"pHash distance {int(dist[r, c])} ({_label(si)} / {_label(sj)})",
                        }
                    )
    return findings


def _label(s: AuditSample) -> str:
    if s.video is not None:
        return "fake" if s.label else "real"
    return "tampered" if s.label else "authentic"
