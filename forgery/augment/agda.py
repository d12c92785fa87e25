"""Attention-guided data augmentation (AGDA) of MAT (Zhao et al., "Multi-attentional Deepfake Detection",
CVPR 2021).

Per sample, one attention map is chosen with probability proportional to sqrt(sum of the map + 1),
upsampled to the image size, divided by its max and soft-thresholded; the image is then mixed with a
degraded copy (downscale, Gaussian blur, noise, upscale) where that map is high, so the network cannot rely
on a single region. Batched tensor ops only (the "soft" mode of the official code), no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor, nn

from forgery.errors import ConfigError

__all__ = ["AGDA", "agda_map_weights", "soft_threshold"]


def agda_map_weights(attention_maps: Tensor) -> Tensor:
    """(B, M, h, w) maps -> (B, M) unnormalised choice weights sqrt(sum over space + 1)."""
    return torch.sqrt(attention_maps.float().sum(dim=(2, 3)) + 1.0)


def soft_threshold(a: Tensor, threshold: float | Tensor, zoom: float | Tensor) -> Tensor:
    """(sigmoid((a - t) z) - sigmoid(-t z)) / (1 - sigmoid(-t z)): 0 at a = 0, ~1 well above t."""
    bottom = torch.sigmoid(torch.as_tensor(-threshold * zoom, dtype=a.dtype, device=a.device))
    return (torch.sigmoid((a - threshold) * zoom) - bottom) / (1 - bottom)


class AGDA(nn.Module):
    """Attention-guided degradation of one attention region per sample.

    Args:
        threshold: range of the soft threshold t ~ U(lo, hi), drawn once per batch.
        zoom: range of the sharpness z ~ U(lo, hi), drawn once per batch.
        scale_factor: bilinear downscale factor of the degraded copy.
        kernel_size: Gaussian blur kernel size.
        sigma: Gaussian blur sigma.
        noise_std: std of the Gaussian noise added in the network's normalised image space ([-1, 1]).
    """

    kind = "faces"  # the task it serves (checked against the model when a run is built)

    def __init__(
        self,
        threshold: tuple[float, float] = (0.4, 0.6),
        zoom: tuple[float, float] = (3.0, 5.0),
        scale_factor: float = 0.5,
        kernel_size: int = 11,
        sigma: float = 7.0,
        noise_std: float = 0.1,
    ) -> None:
        super().__init__()
        if threshold[0] > threshold[1] or zoom[0] > zoom[1]:
            raise ConfigError(f"AGDA: threshold {threshold} and zoom {zoom} must be (low, high) ranges")
        if kernel_size % 2 != 1:
            raise ConfigError(f"AGDA: kernel_size must be odd, got {kernel_size}")
        self.threshold = (float(threshold[0]), float(threshold[1]))
        self.zoom = (float(zoom[0]), float(zoom[1]))
        self.scale_factor = scale_factor
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.noise_std = noise_std

    def _uniform(self, bounds: tuple[float, float], device: torch.device) -> Tensor:
        u = torch.rand((), device=device)
        return bounds[0] + (bounds[1] - bounds[0]) * u

    def degrade(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> downscaled, blurred, noised and upscaled back (B, 3, H, W)."""
        H, W = images.shape[-2:]
        small = F.interpolate(images, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)
        small = gaussian_blur2d(small, (self.kernel_size, self.kernel_size), (self.sigma, self.sigma))
        noise = torch.randn(small.shape, device=small.device, dtype=small.dtype)
        small = small + noise * self.noise_std
        return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=True)

    @torch.no_grad()
    def forward(self, images: Tensor, attention_maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mix each image with its degraded copy inside one chosen attention region.

        Draws from torch's global RNG, which training seeds per (seed, step, rank)
        (``ForgeryModule.step_rng``): the one randomness mechanism of training, exact on resume and
        different on each rank.

        Args:
            images: (B, 3, H, W) in the network's normalised space.
            attention_maps: (B, M, h, w) non-negative maps (MAT's maps before head dropout).
        Returns:
            mixed (B, 3, H, W), selected (B,) long map index, soft mask (B, 1, H, W) in [0, 1].
        """
        if images.dim() != 4 or attention_maps.dim() != 4 or images.shape[0] != attention_maps.shape[0]:
            raise ValueError(
                f"AGDA: images (B, C, H, W) and attention_maps (B, M, h, w) must share B, got "
                f"{tuple(images.shape)} and {tuple(attention_maps.shape)}"
            )
        B, _, H, W = images.shape
        selected = torch.multinomial(agda_map_weights(attention_maps), 1).squeeze(1)
        index = selected.view(B, 1, 1, 1).expand(B, 1, *attention_maps.shape[-2:])
        chosen = torch.gather(attention_maps, 1, index).to(images.dtype)
        chosen = F.interpolate(chosen, size=(H, W), mode="bilinear", align_corners=True)
        chosen = chosen / (chosen.amax(dim=(2, 3), keepdim=True) + 1e-8)
        t = self._uniform(self.threshold, images.device)
        z = self._uniform(self.zoom, images.device)
        mask = soft_threshold(chosen, t.to(images.dtype), z.to(images.dtype))
        mixed = images * (1 - mask) + self.degrade(images) * mask
        return mixed, selected, mask

    def extra_repr(self) -> str:
        return (
            f"threshold={self.threshold}, zoom={self.zoom}, scale_factor={self.scale_factor}, "
            f"kernel_size={self.kernel_size}, sigma={self.sigma}, noise_std={self.noise_std}"
        )
