"""Robustness perturbations applied to evaluation images before the model (``forgery-eval perturb=...``).

Each perturbation is an ``nn.Module`` over a batch of images (B, 3, H, W) in [0, 1] on any device, with one
``level``:

============  ==========================  =========================================================
``perturb=``  ``perturb.level``           what the model sees
============  ==========================  =========================================================
``none``      (none)                      the image as loaded
``jpeg``      quality in [1, 100]         the image re-saved as a baseline JPEG (libjpeg, 4:2:0)
``blur``      sigma in px, >= 0           Gaussian blur, kernel ``2 * ceil(3 sigma) + 1``, mirrored
``resize``    scale > 0                   the image resized by ``scale`` (antialiased bilinear)
``noise``     sigma on 0-255, >= 0        additive white Gaussian noise, seeded per sample
============  ==========================  =========================================================

The output is always an 8-bit image (rounded to k/255 and clipped to [0, 1]), as a perturbed file saved to
disk and read back would be; the levels that change nothing (``blur`` 0, ``resize`` 1, ``noise`` 0) return
the input itself, so their metrics equal the unperturbed ones exactly (JPEG at quality 100 is not lossless:
rounding in the DCT domain and 4:2:0 chroma subsampling remain).

JPEG is the real codec (``torchvision.io.encode_jpeg`` / ``decode_jpeg`` on CPU tensors, i.e. libjpeg), not
``kornia.enhance.jpeg_codec_differentiable``: kornia's forward pass replaces rounding by ``round(x) + (x -
round(x)) ** 3`` so that gradients flow, which is not what a JPEG file holds. torchvision's codec gives
exactly PIL's ``save(quality=q)`` pixels (test). Encoding on the CPU also keeps the result the same on every
device (nvJPEG's encoder is another implementation).

``resize`` is geometric: the model sees the smaller image (padded on the bottom/right to a multiple of
``multiple`` by edge replication, e.g. 16 for MTSE-Net), and :meth:`Resize.restore` brings its dense output
back to the original size (crop of the padding, then bilinear) so that masks and metrics stay at the size of
the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from forgery.errors import ConfigError

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "NoPerturbation",
    "JPEG",
    "GaussianBlur",
    "Resize",
    "GaussianNoise",
    "make_perturbation",
    "quantize",
    "blur_kernel_size",
]


def quantize(images: Tensor) -> Tensor:
    """Images in [0, 1] -> the nearest 8-bit values k / 255 (clipped to [0, 1])."""
    return images.mul(255.0).round_().clamp_(0.0, 255.0).div_(255.0)


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel side covering +-3 sigma (OpenCV's choice for 8-bit images): 7, 13, 19 for sigma 1, 2, 3."""
    return 2 * math.ceil(3.0 * sigma) + 1


class Perturbation(nn.Module):
    """Base class: ``forward(images, index)`` maps (B, 3, H, W) in [0, 1] to perturbed 8-bit images.

    ``index`` (B,) holds the samples' dataset indices; only seeded perturbations (noise) use it, so that a
    sample gets the same perturbation whatever the batch size, order, device or number of processes.
    """

    name: str = "none"
    #: geometric perturbations change H, W; the module calls :meth:`restore` on its dense outputs
    geometric: bool = False

    def __init__(self, level: float | None = None) -> None:
        super().__init__()
        self.level = level

    @property
    def is_identity(self) -> bool:
        """True when the perturbation leaves every image unchanged (then it is skipped altogether)."""
        return True

    def describe(self) -> dict[str, Any]:
        """What ``metrics.json`` records: ``{"name", "level"}`` (and the seed where there is one)."""
        return {"name": self.name, "level": self.level}

    def forward(self, images: Tensor, index: Tensor | Sequence[int] | None = None) -> Tensor:
        return images

    def extra_repr(self) -> str:
        return f"level={self.level}"


class NoPerturbation(Perturbation):
    """``perturb=none``: the images as loaded."""


class JPEG(Perturbation):
    """Baseline JPEG at ``quality`` (libjpeg through torchvision, on CPU tensors), decoded back to RGB."""

    name = "jpeg"

    def __init__(self, quality: int) -> None:
        if isinstance(quality, bool) or not float(quality).is_integer() or not 1 <= int(quality) <= 100:
            raise ConfigError(
                f"perturb=jpeg: level (the JPEG quality) must be an integer in [1, 100], got {quality!r}"
            )
        super().__init__(int(quality))

    @property
    def is_identity(self) -> bool:
        return False  # even quality 100 rounds DCT coefficients and subsamples chroma

    def forward(self, images: Tensor, index: Tensor | Sequence[int] | None = None) -> Tensor:
        _check_images(images)
        pixels = images.detach().mul(255.0).round().clamp(0, 255).to(device="cpu", dtype=torch.uint8)
        encoded = encode_jpeg(list(pixels.unbind(0)), quality=int(self.level))
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB)
        out = torch.stack(decoded).to(device=images.device, dtype=images.dtype)
        return out.div_(255.0)


class GaussianBlur(Perturbation):
    """Gaussian blur with ``sigma`` px (kornia, kernel :func:`blur_kernel_size`, mirrored borders)."""

    name = "blur"

    def __init__(self, sigma: float) -> None:
        if isinstance(sigma, bool) or not float(sigma) >= 0 or not math.isfinite(float(sigma)):
            raise ConfigError(
                f"perturb=blur: level (sigma in pixels) must be a finite number >= 0, got {sigma!r}"
            )
        super().__init__(float(sigma))

    @property
    def is_identity(self) -> bool:
        return self.level == 0.0

    def forward(self, images: Tensor, index: Tensor | Sequence[int] | None = None) -> Tensor:
        _check_images(images)
        if self.is_identity:
            return images
        k = blur_kernel_size(self.level)
        sigma = torch.tensor([[self.level, self.level]], device=images.device, dtype=images.dtype)
        out = kornia.filters.gaussian_blur2d(images, (k, k), sigma, border_type="reflect")
        return quantize(out)


class Resize(Perturbation):
    """The image resized by ``scale`` (antialiased bilinear, PIL's filter) to (round(H s), round(W s)).

    ``multiple``: the resized image is padded on the bottom and right (edge replication) up to a multiple of
    it, for networks that need H, W divisible by 16 (set by the module); :meth:`restore` crops it away.
    """

    name = "resize"
    geometric = True

    def __init__(self, scale: float, multiple: int = 1) -> None:
        if isinstance(scale, bool) or not float(scale) > 0 or not math.isfinite(float(scale)):
            raise ConfigError(
                f"perturb=resize: level (the scale factor) must be a finite number > 0, got {scale!r}"
            )
        super().__init__(float(scale))
        self.multiple = int(multiple)

    @property
    def is_identity(self) -> bool:
        return self.level == 1.0

    def scaled_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) -> the resized image's (h, w) before padding (at least 1 x 1)."""
        return max(1, round(h * self.level)), max(1, round(w * self.level))

    def forward(self, images: Tensor, index: Tensor | Sequence[int] | None = None) -> Tensor:
        _check_images(images)
        if self.is_identity:
            return images
        h, w = self.scaled_size(*images.shape[-2:])
        out = quantize(
            F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        )
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            out = F.pad(out, (0, pw, 0, ph), mode="replicate")
        return out

    def restore(self, maps: Tensor, size: Sequence[int]) -> Tensor:
        """Dense outputs (B, C, h', w') of the resized (padded) image -> (B, C, H, W) for the original
        ``size`` = (H, W): the padding is cropped, then bilinear interpolation (logits, probabilities or
        regression maps alike)."""
        H, W = int(size[0]), int(size[1])
        if tuple(maps.shape[-2:]) == (H, W):
            return maps
        h, w = self.scaled_size(H, W)
        maps = maps[..., :h, :w]
        return F.interpolate(maps.float(), size=(H, W), mode="bilinear", align_corners=False).to(maps.dtype)


class GaussianNoise(Perturbation):
    """Additive white Gaussian noise of standard deviation ``sigma`` on the 0-255 scale, then 8-bit rounding.

    The noise of a sample is drawn on the CPU from NumPy's generator seeded with (``seed``, its dataset
    index), so it is the same on every device, batch size and process count.
    """

    name = "noise"

    def __init__(self, sigma: float, seed: int = 0) -> None:
        if isinstance(sigma, bool) or not float(sigma) >= 0 or not math.isfinite(float(sigma)):
            raise ConfigError(
                f"perturb=noise: level (sigma on the 0-255 scale) must be a finite number >= 0, got {sigma!r}"
            )
        super().__init__(float(sigma))
        self.seed = int(seed)

    @property
    def is_identity(self) -> bool:
        return self.level == 0.0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed}

    def forward(self, images: Tensor, index: Tensor | Sequence[int] | None = None) -> Tensor:
        _check_images(images)
        if self.is_identity:
            return images
        if index is None or len(index) != images.shape[0]:
            raise ValueError(
                "perturb=noise needs the dataset index of every sample of the batch (batch['index']) to seed "
                "its noise"
            )
        idx = index.tolist() if isinstance(index, Tensor) else list(index)
        shape = tuple(images.shape[1:])
        noise = np.stack(
            [np.random.default_rng([self.seed, int(i)]).standard_normal(shape, dtype=np.float32) for i in idx]
        )
        noise = torch.from_numpy(noise).to(device=images.device, dtype=images.dtype)
        return quantize(images + noise * (self.level / 255.0))


PERTURBATIONS: dict[str, type[Perturbation]] = {
    "none": NoPerturbation,
    "jpeg": JPEG,
    "blur": GaussianBlur,
    "resize": Resize,
    "noise": GaussianNoise,
}


def make_perturbation(name: str = "none", level: float | None = None, seed: int = 0) -> Perturbation:
    """The perturbation ``name`` (a key of :data:`PERTURBATIONS`) at ``level`` (``seed``: noise only).

    Raises:
        ValueError: an unknown name, a missing level, or a level out of the perturbation's range.
    """
    if name not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {name!r}; choose one of {sorted(PERTURBATIONS)}")
    if name == "none":
        if level is not None:
            raise ConfigError(f"perturb=none takes no level (got perturb.level={level!r})")
        return NoPerturbation()
    if level is None:
        raise ConfigError(f"perturb={name} needs perturb.level=... (see conf/perturb/{name}.yaml)")
    if name == "noise":
        return GaussianNoise(level, seed=seed)
    return PERTURBATIONS[name](level)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"perturbations take images (B, 3, H, W); got shape {tuple(images.shape)}")
