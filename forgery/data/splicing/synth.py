"""Embedded default splicing dataset, synthesised from the real photographs bundled with scikit-image.

``build_splicing_synth`` cuts object-like regions (superpixel groups, polygons, ellipses) out of one photo,
transforms them (scale, rotation, flip, colour jitter), pastes them with a feathered alpha into a crop of
another photo, and post-processes the WHOLE image (JPEG / blur / down-up resize). Authentic negatives get
the same host sampling and post-processing, so neither photo identity nor compression is a shortcut. Hosts
and donors of each split come only from that split's photos, so the test split is unseen photo content.

Everything is deterministic: each sample draws from numpy Generators seeded by ``(seed, split, index)``, so a
sample can be regenerated on its own (``_render_sample``). Only files shipped inside the scikit-image wheel
are read (never its pooch downloader), so building needs no network.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skimage
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.segmentation import slic

from forgery.data.splicing.io import DataError
from forgery.errors import ConfigError
from forgery.utils.io import atomic_dir

__all__ = ["GENERATOR_VERSION", "SPLITS", "CSV_COLUMNS", "build_splicing_synth", "read_split", "dataset_tag"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 6
SPLITS: tuple[str, ...] = ("train", "val", "test")
CSV_COLUMNS: tuple[str, ...] = ("id", "image", "mask", "label", "host", "donor")

# Real photographs shipped inside the scikit-image package (skimage/data/); name -> file name.
_PHOTO_FILES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "clock_motion": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "moon": "moon.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "page": "page.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
# Photos of the same scene must land in the same split (the stereo pair is nearly the same image).
_PHOTO_GROUPS: dict[str, str] = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
# Bundled files deliberately not used, recorded in meta.json. Pooch-only images (kidney, lily, cells3d, ...)
# are not in the wheel and are never fetched.
_EXCLUDED_FILES: dict[str, str] = {
    "horse.png": "binary silhouette, not a photograph",
    "logo.png": "synthetic graphic",
    "color.png": "synthetic colour chart",
    "phantom.png": "synthetic phantom",
    "chessboard_GRAY.png": "synthetic pattern",
    "chessboard_RGB.png": "synthetic pattern",
    "microaneurysms.png": "too small (102x102)",
    "lfw_subset.npy": "25x25 face thumbnails, too small",
    "multipage.tif": "tiny synthetic test file",
    "multipage_rgb.tif": "tiny synthetic test file",
    "no_time_for_that_tiny.gif": "tiny animation",
}

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_SPLIT_FRACTIONS = {"val": 0.15, "test": 0.25}  # train gets the rest (~60%)
_MIN_PHOTOS_PER_SPLIT = 2
# Stream ids appended to the seed so that unrelated draws never share a Generator.
_STREAM_PHOTO_SPLIT, _STREAM_LABELS = 101, 102
_STREAM_HOST, _STREAM_DONOR, _STREAM_POST = 0, 1, 2

_MIN_SIZE = 32
_CROP_SCALE = (0.5, 1.0)  # crop side as a fraction of the photo's shorter side, uniform
_SLIC_MAX_SIDE = 128  # superpixels are computed on a downscaled donor crop for speed
_AREA_TARGET = (0.02, 0.25)  # log-uniform target area fraction of the pasted region
_AREA_ACCEPT = (0.015, 0.30)  # final in-image area fraction must fall here, else redraw
_MIN_INSIDE = 0.5  # at least this share of the transformed region must land inside the host
_MAX_ATTEMPTS = 200
_COPY_MOVE_PROB = 0.2
_SENSOR_NOISE = (0.0, 8.0)  # host sensor-noise sigma (0-255 scale), uniform
_NOISE_GAP = (6.0, 15.0)  # |donor sigma - host sigma|, uniform (v5: 3-8, too faint to learn in a CPU demo)
_RESAMPLE = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
_PNG_COMPRESS_LEVEL = 1  # bytes are identical for a given level; level 1 is ~3x faster than the default


@dataclass(frozen=True)
class _Photo:
    name: str
    group: str
    image: Image.Image  # mode "RGB" or "L"
    gray: bool


@dataclass
class _Sample:
    """One rendered sample: image (S, S, 3) uint8, mask (S, S) uint8 in {0, 255}, and provenance."""

    image: np.ndarray
    mask: np.ndarray
    host: str
    donor: str
    shape: str = ""
    attempts: int = 0
    post: dict[str, Any] = field(default_factory=dict)


def _skimage_data_dir() -> Path:
    return Path(skimage.__file__).resolve().parent / "data"


def _load_photos(data_dir: Path | None = None) -> tuple[dict[str, _Photo], dict[str, str]]:
    """Decode the bundled photographs from disk (no network). Returns (photos by name, missing -> reason)."""
    data_dir = _skimage_data_dir() if data_dir is None else data_dir
    photos: dict[str, _Photo] = {}
    missing: dict[str, str] = {}
    for name, fname in sorted(_PHOTO_FILES.items()):
        path = data_dir / fname
        if not path.is_file():
            missing[name] = f"{path} not shipped with scikit-image {skimage.__version__}"
            continue
        with Image.open(path) as im:
            im.load()
            gray = im.mode in ("L", "I", "I;16", "1")
            img = im.convert("L" if gray else "RGB")
        photos[name] = _Photo(name=name, group=_PHOTO_GROUPS.get(name, name), image=img, gray=gray)
    return photos, missing


def _split_photos(photos: dict[str, _Photo], seed: int) -> dict[str, list[str]]:
    """Assign photo groups to splits: ~60/15/25 %, stratified by colour mode, shuffled by ``seed``.

    Stratifying keeps colour and gray photos in every split, so donors can always match the host's mode.
    """
    rng = np.random.default_rng([seed, _STREAM_PHOTO_SPLIT])
    groups: dict[str, list[str]] = {}
    for name in sorted(photos):
        groups.setdefault(photos[name].group, []).append(name)
    by_mode: dict[bool, list[str]] = {}
    for group, names in sorted(groups.items()):
        by_mode.setdefault(photos[names[0]].gray, []).append(group)
    pools = [sorted(g) for g in by_mode.values()]
    if any(len(p) < 3 for p in pools):  # too few of one mode to stratify: split them together
        pools = [sorted(g for p in pools for g in p)]
    assigned: dict[str, list[str]] = {s: [] for s in SPLITS}
    for pool in pools:
        order = [pool[i] for i in rng.permutation(len(pool))]
        n_test = max(1, int(_SPLIT_FRACTIONS["test"] * len(pool) + 0.5))
        n_val = max(1, int(_SPLIT_FRACTIONS["val"] * len(pool) + 0.5))
        parts = {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        for split, part in parts.items():
            assigned[split].extend(name for g in part for name in groups[g])
    for split in SPLITS:
        assigned[split].sort()
        if len(assigned[split]) < _MIN_PHOTOS_PER_SPLIT:
            raise RuntimeError(
                f"splicing_synth: only {len(photos)} photos found in {_skimage_data_dir()}, "
                f"split {split!r} got {len(assigned[split])} (< {_MIN_PHOTOS_PER_SPLIT})"
            )
    return assigned


def _split_labels(seed: int, split: str, n: int, authentic_fraction: float) -> np.ndarray:
    """(n,) int labels with exactly round(n * authentic_fraction) zeros at seeded positions."""
    labels = np.ones(n, dtype=np.int64)
    n_auth = int(round(n * authentic_fraction))
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], _STREAM_LABELS])
    labels[rng.permutation(n)[:n_auth]] = 0
    return labels


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index, stream])


def _random_crop(photo: _Photo, rng: np.random.Generator, size: int) -> np.ndarray:
    """Square crop (side U(_CROP_SCALE) x shorter side, random position, h-flip p=0.5) -> (S, S, 3) uint8."""
    w, h = photo.image.size
    side = rng.uniform(*_CROP_SCALE) * min(w, h)
    x0 = rng.uniform(0.0, w - side)
    y0 = rng.uniform(0.0, h - side)
    flip = rng.random() < 0.5
    resample = _RESAMPLE[rng.integers(len(_RESAMPLE))]
    crop = photo.image.resize((size, size), resample=resample, box=(x0, y0, x0 + side, y0 + side))
    arr = np.asarray(crop.convert("RGB"))
    return np.ascontiguousarray(arr[:, ::-1]) if flip else arr


def _superpixel_mask(donor: np.ndarray, rng: np.random.Generator, target: float) -> np.ndarray:
    """Connected union of 1-4 neighbouring SLIC segments of ``donor`` (S, S, 3) -> (S, S) bool."""
    size = donor.shape[0]
    k = int(rng.integers(1, 5))
    small = min(size, _SLIC_MAX_SIDE)
    img = (
        donor if small == size else np.asarray(Image.fromarray(donor).resize((small, small), Image.BILINEAR))
    )
    n_segments = int(np.clip(round(k / target), 4, 256))
    labels = slic(img, n_segments=n_segments, compactness=10.0, start_label=0)
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
        ]
    )
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs.tolist():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    chosen = [int(rng.integers(labels.max() + 1))]
    while len(chosen) < k:
        frontier = sorted(set().union(*(neighbours.get(c, set()) for c in chosen)) - set(chosen))
        if not frontier:
            break
        chosen.append(frontier[int(rng.integers(len(frontier)))])
    union = np.isin(labels, chosen).astype(np.uint8) * 255
    if small != size:  # bilinear upsampling + threshold gives smooth rather than blocky boundaries
        union = np.asarray(Image.fromarray(union).resize((size, size), Image.BILINEAR))
    return union >= 128


def _polygon_mask(size: int, rng: np.random.Generator, target: float, ellipse: bool) -> np.ndarray:
    """Random star-shaped polygon or rotated ellipse with area ~ target * S^2 -> (S, S) bool."""
    if ellipse:
        t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        aspect = rng.uniform(0.35, 1.0)
        pts = np.stack([np.cos(t), aspect * np.sin(t)], 1)
    else:
        n = int(rng.integers(5, 13))
        t = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
        r = rng.uniform(0.45, 1.0, n)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    theta = rng.uniform(0.0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    pts *= math.sqrt(target * size * size / max(area, 1e-6))
    half = np.abs(pts).max(0)
    lo, hi = np.minimum(half, size / 2), np.maximum(size - half, size / 2)
    pts += np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])])
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts.tolist()], fill=255)
    return np.asarray(canvas) >= 128


def _colour_matrix(rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Small colour jitter as (3x3 saturation+hue matrix, brightness, contrast); keeps gray pixels gray."""
    brightness, contrast = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
    saturation, hue = rng.uniform(0.85, 1.15), rng.uniform(-0.03, 0.03) * 2.0 * np.pi
    luma = np.array([0.299, 0.587, 0.114])
    sat = (1.0 - saturation) * np.outer(np.ones(3), luma) + saturation * np.eye(3)
    yiq = np.array([luma, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = np.cos(hue), np.sin(hue)
    hue_rot = np.linalg.inv(yiq) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ yiq
    return hue_rot @ sat, brightness, contrast


def _transform_patch(
    donor: np.ndarray, mask: np.ndarray, rng: np.random.Generator, feather_sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the masked region, flip/rotate/scale it with one affine resampling, jitter its colour.

    Returns (patch (h, w, 3) float32 in [0, 255], alpha (h, w) float32 in [0, 1]).
    """
    scale, angle, flip = rng.uniform(0.7, 1.3), np.deg2rad(rng.uniform(-30.0, 30.0)), rng.random() < 0.5
    resample = _RESAMPLE[int(rng.integers(2))]  # bilinear or bicubic
    matrix, brightness, contrast = _colour_matrix(rng)
    ys, xs = np.nonzero(mask)
    margin = int(math.ceil(3 * feather_sigma)) + 3
    # Reflect-pad so the resampling kernel never reaches PIL's black fill at the donor crop's border.
    padded = np.pad(donor, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1 + 2 * margin, xs.min(), xs.max() + 1 + 2 * margin
    rgb = padded[y0:y1, x0:x1]
    m = np.pad(mask, margin)[y0:y1, x0:x1].astype(np.uint8) * 255
    if flip:
        rgb, m = rgb[:, ::-1], m[:, ::-1]
    h, w = m.shape
    fwd = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = (np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64) - [w / 2, h / 2]) @ fwd.T
    out_w, out_h = (np.ceil(corners.max(0) - corners.min(0)).astype(int) + 1).tolist()
    inv = np.linalg.inv(fwd)
    offset = np.array([w / 2, h / 2]) - inv @ np.array([out_w / 2, out_h / 2])
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    affine = Image.Transform.AFFINE
    rgb_t = Image.fromarray(np.ascontiguousarray(rgb)).transform((out_w, out_h), affine, coeffs, resample)
    m_t = Image.fromarray(np.ascontiguousarray(m)).transform((out_w, out_h), affine, coeffs, Image.BILINEAR)
    patch = np.asarray(rgb_t, dtype=np.float32)
    alpha = (np.asarray(m_t) >= 128).astype(np.float32)
    sel = alpha > 0
    if sel.any():
        mean = float((patch[sel] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
        patch = patch @ matrix.T.astype(np.float32)
        patch = ((patch - mean) * contrast + mean) * brightness
    if feather_sigma > 0.25:
        # Open first: slivers thinner than the ramp would blend in visibly yet never reach alpha > 0.5.
        radius = int(math.ceil(1.5 * feather_sigma))
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        alpha = ndimage.binary_opening(alpha > 0, structure=disk).astype(np.float32)
        alpha = ndimage.gaussian_filter(alpha, feather_sigma, mode="constant")
    return np.clip(patch, 0.0, 255.0), alpha


def _add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Luminance sensor-like noise N(0, sigma) (same on every channel, so gray stays gray); float32 out."""
    noise = rng.normal(0.0, sigma, image.shape[:2]).astype(np.float32)[..., None]
    return image.astype(np.float32) + noise


def _donor_sigma(host_sigma: float, rng: np.random.Generator) -> float:
    """A sensor-noise level at least ``_NOISE_GAP[0]`` away from the host's: above or below it at random
    (below only when the host is noisy enough)."""
    gap = rng.uniform(*_NOISE_GAP)
    lower = rng.random() < 0.5 and host_sigma - gap >= 0.0
    return float(host_sigma - gap if lower else host_sigma + gap)


def _donor_trace(
    patch: np.ndarray, rng: np.random.Generator, host_sigma: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Traces of the donor's own history, in capture order: another focus (p 0.3, optical, so before the
    sensor), its own sensor-noise level, always different from the host's (another camera, or for a
    copy-moved region the forger's resampling), and an earlier JPEG at another quality (p 0.5)."""
    u = rng.random(2)
    blur, quality = rng.uniform(0.8, 1.8), int(rng.integers(20, 61))
    params: dict[str, Any] = {}
    if u[0] < 0.3:
        patch = ndimage.gaussian_filter(patch, (blur, blur, 0))
        params["blur"] = round(float(blur), 3)
    sigma = _donor_sigma(host_sigma, rng)
    patch = _add_noise(patch, sigma, rng)
    params["noise"] = round(sigma, 3)
    if u[1] < 0.5:
        buf = io.BytesIO()
        as_u8 = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
        Image.fromarray(as_u8).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            patch = np.asarray(im.convert("RGB"), dtype=np.float32)
        params["jpeg"] = quality
    return np.clip(patch, 0.0, 255.0), params


def _paste(
    host: np.ndarray, donor: np.ndarray, rng: np.random.Generator, size: int, host_sigma: float = 0.0
) -> tuple[np.ndarray, np.ndarray, str, float] | None:
    """One paste attempt. Returns (image (S, S, 3) float32, mask (S, S) bool, shape kind, area) or None."""
    kind = ("superpixel", "superpixel", "polygon", "ellipse")[int(rng.integers(4))]
    target = float(np.exp(rng.uniform(np.log(_AREA_TARGET[0]), np.log(_AREA_TARGET[1]))))
    if kind == "superpixel":
        shape = _superpixel_mask(donor, rng, target)
    else:
        shape = _polygon_mask(size, rng, target, ellipse=kind == "ellipse")
    if not shape.any():
        return None
    feather_sigma = rng.uniform(0.0, 1.5)  # Gaussian ramp of ~0-3 px on each side of the boundary
    patch, alpha = _transform_patch(donor, shape, rng, feather_sigma)
    patch, _ = _donor_trace(patch, rng, host_sigma)
    ph, pw = alpha.shape
    cy = rng.uniform(min(ph / 4, size / 2), max(size - ph / 4, size / 2))
    cx = rng.uniform(min(pw / 4, size / 2), max(size - pw / 4, size / 2))
    top, left = int(round(cy - ph / 2)), int(round(cx - pw / 2))
    hy0, hy1, hx0, hx1 = max(top, 0), min(top + ph, size), max(left, 0), min(left + pw, size)
    if hy0 >= hy1 or hx0 >= hx1:
        return None
    a = alpha[hy0 - top : hy1 - top, hx0 - left : hx1 - left]
    inside, total = int((a > 0.5).sum()), int((alpha > 0.5).sum())
    area = inside / (size * size)
    if total == 0 or inside < _MIN_INSIDE * total or not _AREA_ACCEPT[0] <= area <= _AREA_ACCEPT[1]:
        return None
    out = host.astype(np.float32)
    region = out[hy0:hy1, hx0:hx1]
    a3 = a[..., None]
    out[hy0:hy1, hx0:hx1] = region * (1.0 - a3) + patch[hy0 - top : hy1 - top, hx0 - left : hx1 - left] * a3
    mask = np.zeros((size, size), dtype=bool)
    mask[hy0:hy1, hx0:hx1] = a > 0.5
    return out, mask, kind, area


# Whole-image post-processing law (authentic and tampered alike).
POST_PROB = {"jpeg_quality": 0.6, "blur_sigma": 0.2, "resize": 0.2}
POST_JPEG_QUALITY = (85, 100)
POST_BLUR_SIGMA = (0.0, 0.8)
POST_RESIZE_FACTOR = (0.7, 1.0)


def _postprocess(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Whole-image degradations (same law for every sample): down-up resize, Gaussian blur, JPEG re-save."""
    size = image.shape[0]
    u = rng.random(3)
    factor, sigma = rng.uniform(*POST_RESIZE_FACTOR), rng.uniform(*POST_BLUR_SIGMA)
    quality = int(rng.integers(POST_JPEG_QUALITY[0], POST_JPEG_QUALITY[1] + 1))
    down, up = (_RESAMPLE[int(i)] for i in rng.integers(len(_RESAMPLE), size=2))
    params: dict[str, Any] = {}
    if u[0] < POST_PROB["resize"]:
        small = max(8, int(round(size * factor)))
        img = Image.fromarray(image).resize((small, small), down).resize((size, size), up)
        image, params["resize"] = np.asarray(img), round(float(factor), 4)
    if u[1] < POST_PROB["blur_sigma"]:
        image = np.clip(ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0)) + 0.5, 0, 255)
        image, params["blur_sigma"] = image.astype(np.uint8), round(float(sigma), 4)
    if u[2] < POST_PROB["jpeg_quality"]:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            image, params["jpeg_quality"] = np.asarray(im.convert("RGB")), quality
    return image, params


def _render_sample(
    photos: dict[str, _Photo],
    split_photos: list[str],
    *,
    seed: int,
    split: str,
    index: int,
    label: int,
    size: int,
    paste: bool = True,
    post: bool = True,
) -> _Sample:
    """Generate one sample from its own Generators (host, donor/paste and post-processing streams).

    ``paste=False`` / ``post=False`` return the same sample without the splice / degradations: the host crop
    and post-processing draws are unchanged, which lets tests isolate what the paste altered.
    """
    host_rng = _rng(seed, split, index, _STREAM_HOST)
    host_name = split_photos[int(host_rng.integers(len(split_photos)))]
    host_photo = photos[host_name]
    host = _random_crop(host_photo, host_rng, size)
    host_sigma = float(host_rng.uniform(*_SENSOR_NOISE))  # the host camera's noise, authentic images too
    host = np.clip(_add_noise(host, host_sigma, host_rng) + 0.5, 0, 255).astype(np.uint8)
    sample = _Sample(image=host, mask=np.zeros((size, size), np.uint8), host=host_name, donor="")
    if label == 1:
        rng = _rng(seed, split, index, _STREAM_DONOR)
        same_mode = [n for n in split_photos if n != host_name and photos[n].gray == host_photo.gray]
        if rng.random() < _COPY_MOVE_PROB or not same_mode:
            donor_name = host_name  # copy-move-like: another crop of the same photo
        else:
            donor_name = same_mode[int(rng.integers(len(same_mode)))]
        sample.donor = donor_name
        result = None
        while result is None:
            if sample.attempts == _MAX_ATTEMPTS:
                raise RuntimeError(
                    f"splicing_synth: no valid paste for {split}[{index}] (host {host_name}, donor "
                    f"{donor_name}) after {_MAX_ATTEMPTS} attempts"
                )
            sample.attempts += 1
            donor = _random_crop(photos[donor_name], rng, size)
            result = _paste(host, donor, rng, size, host_sigma)
        composite, mask, sample.shape, _ = result
        sample.mask = mask.astype(np.uint8) * 255
        if paste:
            if host_photo.gray:  # undo float drift of the colour matrix so gray hosts stay exactly gray
                composite = np.repeat(composite.mean(axis=2, keepdims=True), 3, axis=2)
            sample.image = np.clip(composite + 0.5, 0, 255).astype(np.uint8)
    if post:
        sample.image, sample.post = _postprocess(sample.image, _rng(seed, split, index, _STREAM_POST))
    return sample


def dataset_tag(
    *, seed: int, size: int, n_train: int, n_val: int, n_test: int, authentic_fraction: float
) -> str:
    """Folder name encoding every parameter that changes the data (and the generator version)."""
    return (
        f"splicing_synth-v{GENERATOR_VERSION}-seed{seed}-{size}px-"
        f"{n_train}.{n_val}.{n_test}-auth{float(authentic_fraction)!r}"
    )


def _check_params(seed: int, size: int, counts: dict[str, int], authentic_fraction: float) -> None:
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(seed) or seed < 0:
        raise ConfigError(f"build_splicing_synth: seed must be a non-negative int, got {seed!r}")
    if not is_int(size) or size < _MIN_SIZE:
        raise ConfigError(f"build_splicing_synth: size must be an int >= {_MIN_SIZE}, got {size!r}")
    for split, n in counts.items():
        if not is_int(n) or n < 0:
            raise ConfigError(f"build_splicing_synth: n_{split} must be a non-negative int, got {n!r}")
    if not 0.0 <= float(authentic_fraction) <= 1.0:
        raise ConfigError(
            f"build_splicing_synth: authentic_fraction must be in [0, 1], got {authentic_fraction!r}"
        )


def _remove_stale_builds(root: Path, tag: str) -> int:
    """Delete temp/old folders of this tag left by builds whose process no longer exists. Returns count."""
    removed = 0
    for path in sorted(root.glob(f".{tag}.*-*-*")):
        try:
            pid = int(path.name[len(tag) + 2 :].split("-")[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue  # owner alive (possibly building right now)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    if removed:
        log.warning(
            "splicing_synth: removed %d stale temp folder(s) of interrupted builds in %s", removed, root
        )
    return removed


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)


def build_splicing_synth(
    root: str | Path,
    *,
    seed: int = 0,
    size: int = 256,
    n_train: int = 800,
    n_val: int = 100,
    n_test: int = 200,
    authentic_fraction: float = 0.2,
    force: bool = False,
) -> Path:
    """Build (once) the synthetic splicing dataset under ``root/<tag>/`` and return that folder.

    Layout: ``{split}/images/<id>.png`` (S x S RGB), ``{split}/masks/<id>.png`` (L, 0/255, 255 = spliced,
    all zero for authentic), ``{split}.csv`` (``id,image,mask,label,host,donor``, paths relative to the tag
    folder) and ``meta.json``. The build happens in a temp folder that is ``os.replace``d into place, so an
    interrupted build leaves no partial dataset; if the folder exists the call returns at once (``force``
    rebuilds it).
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    _check_params(seed, size, counts, authentic_fraction)
    seed, size, authentic_fraction = int(seed), int(size), float(authentic_fraction)
    counts = {split: int(n) for split, n in counts.items()}
    root = Path(root)
    tag = dataset_tag(
        seed=seed,
        size=size,
        n_train=counts["train"],
        n_val=counts["val"],
        n_test=counts["test"],
        authentic_fraction=authentic_fraction,
    )
    final = root / tag
    if final.exists() and not force:
        if not (final / "meta.json").is_file():
            raise FileExistsError(
                f"splicing_synth: {final} exists but has no meta.json (not built by this module?); "
                "remove it or pass force=True"
            )
        return final
    root.mkdir(parents=True, exist_ok=True)
    stale = _remove_stale_builds(root, tag)
    photos, missing = _load_photos()
    split_photos = _split_photos(photos, seed)
    # a force rebuild replaces the old build; a concurrent build that finished first is kept
    with atomic_dir(final) as tmp:
        stats = _write_splits(tmp, photos, split_photos, counts, seed, size, authentic_fraction)
        meta = {
            "generator": "forgery.data.splicing.synth",
            "generator_version": GENERATOR_VERSION,
            "params": {
                "seed": seed,
                "size": size,
                **{f"n_{s}": n for s, n in counts.items()},
                "authentic_fraction": authentic_fraction,
            },
            "photo_split": split_photos,
            "photo_groups": {n: p.group for n, p in sorted(photos.items())},
            "photo_modes": {n: "L" if p.gray else "RGB" for n, p in sorted(photos.items())},
            "photos_missing": missing,
            "files_excluded": _EXCLUDED_FILES,
            "source": f"scikit-image {skimage.__version__} bundled data (skimage/data/)",
            "stats": stats,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    log.info(
        "splicing_synth: built %s (%s; %d paste redraws; %d stale temp folders removed)",
        final,
        ", ".join(f"{s}: {v['tampered']} tampered + {v['authentic']} authentic" for s, v in stats.items()),
        sum(v["paste_redraws"] for v in stats.values()),
        stale,
    )
    return final


def _write_splits(
    out: Path,
    photos: dict[str, _Photo],
    split_photos: dict[str, list[str]],
    counts: dict[str, int],
    seed: int,
    size: int,
    authentic_fraction: float,
) -> dict[str, dict[str, Any]]:
    """Render and write every split into ``out``; returns per-split statistics for meta.json."""
    stats: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        (out / split / "images").mkdir(parents=True)
        (out / split / "masks").mkdir(parents=True)
        labels = _split_labels(seed, split, counts[split], authentic_fraction)
        st: dict[str, Any] = {"tampered": 0, "authentic": 0, "copy_move": 0, "paste_redraws": 0, "shapes": {}}
        st.update({"jpeg": 0, "blur": 0, "resize": 0})
        with open(out / f"{split}.csv", "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for index, label in enumerate(labels.tolist()):
                s = _render_sample(
                    photos, split_photos[split], seed=seed, split=split, index=index, label=label, size=size
                )
                sid = f"{split}_{index:05d}"
                image_rel, mask_rel = f"{split}/images/{sid}.png", f"{split}/masks/{sid}.png"
                _save_png(s.image, out / image_rel)
                _save_png(s.mask, out / mask_rel)
                writer.writerow([sid, image_rel, mask_rel, label, s.host, s.donor])
                st["tampered" if label else "authentic"] += 1
                if label:
                    st["copy_move"] += s.donor == s.host
                    st["paste_redraws"] += s.attempts - 1
                    st["shapes"][s.shape] = st["shapes"].get(s.shape, 0) + 1
                st["jpeg"] += "jpeg_quality" in s.post
                st["blur"] += "blur_sigma" in s.post
                st["resize"] += "resize" in s.post
        stats[split] = st
    return stats


def read_split(tag_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """Parse ``tag_dir/<split>.csv`` into dicts (id, image, mask: absolute Path, label: int, host, donor)."""
    if split not in SPLITS:
        raise ConfigError(f"read_split: split must be one of {SPLITS}, got {split!r}")
    tag_dir = Path(tag_dir).resolve()
    path = tag_dir / f"{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"read_split: {path} does not exist (build it with build_splicing_synth)")
    rows: list[dict[str, Any]] = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            raise DataError(f"read_split: {path}: header must be {','.join(CSV_COLUMNS)}, got {header}")
        for line, rec in enumerate(reader, start=2):
            if len(rec) != len(CSV_COLUMNS):
                raise DataError(
                    f"read_split: {path}:{line}: expected {len(CSV_COLUMNS)} fields, got {len(rec)}"
                )
            row: dict[str, Any] = dict(zip(CSV_COLUMNS, rec))
            if row["label"] not in ("0", "1"):
                raise DataError(f"read_split: {path}:{line}: label must be 0 or 1, got {row['label']!r}")
            row["label"] = int(row["label"])
            for key in ("image", "mask"):
                row[key] = tag_dir / row[key]
                if not row[key].is_file():
                    raise FileNotFoundError(f"read_split: {path}:{line}: {key} file {row[key]} is missing")
            rows.append(row)
    return rows
