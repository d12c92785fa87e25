"""Paired (image, mask) augmentations, batched on the device with kornia: one set of random parameters for
both, so masks stay aligned (used by the localization models; an image-only model would not need masks)."""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
from omegaconf import ListConfig
from torch import Tensor, nn

from forgery.errors import ConfigError

__all__ = ["PairedAugmentation", "kornia_aug"]


class PairedAugmentation(nn.Module):
    """Applies kornia augmentations to images and their masks with the same random parameters.

    Geometric transforms warp the mask with nearest interpolation; intensity transforms (JPEG, blur, noise,
    colour) leave it untouched.

    Args:
        transforms: kornia augmentation modules, applied in order.
    """

    kind = "splicing"  # localization models take (image, mask) pairs; checked when a run is built

    def __init__(self, transforms: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.transforms = list(transforms)
        self.seq = (
            K.AugmentationSequential(*self.transforms, data_keys=["input", "mask"]) if transforms else None
        )

    def forward(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) {0, 1} -> the augmented pair."""
        if self.seq is None:
            return images, masks
        out_images, out_masks = self.seq(images, masks.float())
        return out_images.clamp(0.0, 1.0), (out_masks > 0.5).to(masks.dtype)


def kornia_aug(name: str, **kwargs) -> nn.Module:
    """Builds ``kornia.augmentation.<name>(**kwargs)`` with config lists turned into the tuples kornia wants.

    Hydra hands sequences over as lists; kornia's argument checks want tuples (e.g. ``size=(h, w)``).
    """
    fix = {k: tuple(v) if isinstance(v, (list, ListConfig)) else v for k, v in kwargs.items()}
    try:
        cls = getattr(K, name)
    except AttributeError as err:
        raise ConfigError(f"kornia.augmentation has no {name!r}") from err
    return cls(**fix)
