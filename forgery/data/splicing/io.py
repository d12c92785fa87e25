"""Image and ground-truth-mask readers shared by every splicing dataset.

Both readers decode the whole file up front (``Image.load()``) so that corrupt or truncated files fail here,
with the file named, instead of deep inside a DataLoader worker. Orientation from EXIF is applied to images
and masks alike, so a rotated photo and its mask stay aligned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from forgery.errors import ConfigError

__all__ = ["MASK_RULES", "DataError", "load_image", "load_mask"]


class DataError(ValueError):
    """A dataset file or layout is unusable; the message always names the file (or root) and the problem."""


MASK_RULES: dict[str, str] = {
    "lum127": (
        "tampered where luminance > 127 (white = tampered). Alpha/palette masks are flattened onto black "
        "first (transparent = pristine), colour masks are reduced with PIL convert('L'). A mask whose "
        "maximum value is 1 is read as a 0/1 mask (1 = tampered). CASIA v1/v2, IMD2020, COVERAGE, "
        "generic folders."
    ),
    "lum127_inv": (
        "tampered where luminance <= 127 (black = tampered), same flattening as lum127; a 0/1 mask "
        "(maximum 1) is read with 0 = tampered. Official NIST16 references, DSO-1."
    ),
    "columbia_green": (
        "Columbia Uncompressed `edgemask` tri-colour JPEG: tampered where the green channel > 120 "
        "(a JPEG-tolerant threshold; this is the rule given in the project's issue spec)."
    ),
}

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _open_decoded(path: Path) -> Image.Image:
    """Open ``path``, force a full decode and apply EXIF orientation; every failure becomes a DataError."""
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            out = ImageOps.exif_transpose(img)
            # exif_transpose returns a copy only when it rotates; copy so the file handle can close.
            return out.copy() if out is img else out
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a recognised image file (PIL cannot identify the format)") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc})") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError... for damaged data
        raise DataError(f"{path}: corrupt or truncated image data ({type(exc).__name__}: {exc})") from exc


def _scale_to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Map a 16-bit (or 16-bit-in-int32) or float single-channel array onto 0..255 by scaling, not clipping.

    Integers are read as 16-bit (value * 255 / 65535, rounded); ``I`` is PIL's container for 16-bit data.
    Floats in [0, 1] are scaled by 255, floats in [0, 255] are kept, floats in [0, 65535] are read as 16-bit.
    """
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: float image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise DataError(f"{path}: float image values span [{lo}, {hi}], outside [0, 65535]")
        scale = 255.0 if hi <= 1.0 else (1.0 if hi <= 255.0 else 255.0 / 65535.0)
        return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    wide = arr.astype(np.int64)
    lo, hi = int(wide.min()), int(wide.max())
    if lo < 0 or hi > 65535:
        raise DataError(f"{path}: integer image values span [{lo}, {hi}], outside the 16-bit range")
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (img.mode == "P" and "transparency" in img.info)


def _flatten_alpha(img: Image.Image, background: int) -> Image.Image:
    """Composite an image with alpha (or a palette with transparency) onto a flat grey ``background``."""
    rgba = img.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (background, background, background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Read any PIL-readable image as uint8 RGB of shape (H, W, 3), EXIF orientation applied.

    Alpha is discarded (colour values are kept as stored, like OpenCV's default), palettes are expanded,
    16-bit and float greyscale are scaled to 8 bits (see ``_scale_to_uint8``), CMYK uses PIL's conversion.
    Raises DataError("<path>: ...") for a missing, empty, unidentifiable, corrupt or truncated file.
    """
    path = Path(path)
    img = _open_decoded(path)
    try:
        if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
            grey = _scale_to_uint8(np.asarray(img), path)
            return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        rgb = img if img.mode == "RGB" else img.convert("RGB")
    except DataError:
        raise
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot convert image mode {img.mode!r} to RGB ({exc})") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: decoded to shape {arr.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(arr)


def _mask_values(img: Image.Image, path: Path) -> np.ndarray:
    """Flatten a mask of any mode to (H, W) uint8 luminance; a 0/1 mask (maximum exactly 1) becomes 0/255."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        raw = np.asarray(img)
        if raw.max() == 1 and raw.min() >= 0:
            return (raw > 0).astype(np.uint8) * 255
        return _scale_to_uint8(raw, path)
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    try:
        flat = _flatten_alpha(img, background=0) if _has_alpha(img) else img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot convert mask mode {img.mode!r} ({exc})") from exc
    rgb = np.asarray(flat, dtype=np.uint8)
    if rgb.max() == 1:
        return (rgb.max(axis=2) > 0).astype(np.uint8) * 255
    return np.asarray(flat.convert("L"), dtype=np.uint8)


def load_mask(path: str | Path, rule: str) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W), True = tampered, binarised with a rule from MASK_RULES.

    Raises ConfigError (a ValueError) for an unknown rule and DataError("<path>: ...") for an unreadable file.
    """
    if rule not in MASK_RULES:
        raise ConfigError(f"unknown mask rule {rule!r}; valid rules: {sorted(MASK_RULES)}")
    path = Path(path)
    img = _open_decoded(path)
    if rule == "columbia_green":
        try:
            flat = _flatten_alpha(img, background=0) if _has_alpha(img) else img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot convert mask mode {img.mode!r} to RGB ({exc})") from exc
        return np.asarray(flat, dtype=np.uint8)[..., 1] > 120
    lum = _mask_values(img, path)
    return lum > 127 if rule == "lum127" else lum <= 127
