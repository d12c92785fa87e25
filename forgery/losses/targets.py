"""Edge targets of MTSE-Net's loss (not augmentation), computed on the device from the batch.

Both targets use the morphological internal gradient ``x - erode(x, 3x3 cross)``: for a grayscale image it
is a cheap, parameter-free edge map in [0, 1]; for a 0/1 mask it is the one-pixel inner boundary of the
tampered region.
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_grayscale
from kornia.morphology import erosion
from torch import Tensor

__all__ = ["CROSS_3X3", "internal_gradient", "edge_targets"]

CROSS_3X3 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def internal_gradient(x: Tensor) -> Tensor:
    """Morphological internal gradient x - erode(x, 3x3 cross); pixels outside the image are ignored.

    Args:
        x: (B, C, H, W) float.
    Returns:
        (B, C, H, W), non-negative.
    """
    kernel = CROSS_3X3.to(device=x.device, dtype=x.dtype)
    return x - erosion(x, kernel, border_type="geodesic")


def edge_targets(images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Image-edge and mask-edge targets.

    Args:
        images: (B, 3, H, W) RGB in [0, 1].
        masks: (B, 1, H, W) or (B, H, W) with values {0, 1}.
    Returns:
        image_edge (B, 1, H, W) float in [0, 1]; mask_edge (B, H, W) long in {0, 1}.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    image_edge = internal_gradient(rgb_to_grayscale(images)).clamp_(0.0, 1.0)
    mask_edge = internal_gradient(masks.float())[:, 0].round().long()
    return image_edge, mask_edge
