"""MTSE-Net multi-task loss: CE(label mask) + 0.2 CE(mask edge) + 0.8 MSE(image edge)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from forgery.models.mtse_net import MTSEOutput

__all__ = ["MTSELoss"]


class MTSELoss(nn.Module):
    """Weighted sum of the three MTSE-Net task losses (weights from ``conf/loss/mtse.yaml``).

    Args:
        mask_weight: weight of the label-mask cross-entropy.
        mask_edge_weight: weight of the mask-edge cross-entropy.
        image_edge_weight: weight of the image-edge mean squared error.
    """

    kind = "splicing"  # the task it serves (checked against the model when a run is built)

    def __init__(
        self, mask_weight: float = 1.0, mask_edge_weight: float = 0.2, image_edge_weight: float = 0.8
    ) -> None:
        super().__init__()
        self.mask_weight = mask_weight
        self.mask_edge_weight = mask_edge_weight
        self.image_edge_weight = image_edge_weight

    def forward(
        self, out: MTSEOutput, mask: Tensor, mask_edge: Tensor, image_edge: Tensor
    ) -> dict[str, Tensor]:
        """Loss terms and their weighted total.

        Args:
            out: network output for (B, 3, H, W) images.
            mask: (B, H, W) long {0, 1} label mask.
            mask_edge: (B, H, W) long {0, 1} mask-edge target.
            image_edge: (B, 1, H, W) float image-edge target.
        Returns:
            ``{"loss", "mask", "mask_edge", "image_edge"}`` scalars (the terms unweighted).
        """
        terms = {
            "mask": F.cross_entropy(out.mask_logits, mask),
            "mask_edge": F.cross_entropy(out.mask_edge_logits, mask_edge),
            "image_edge": F.mse_loss(out.image_edge, image_edge),
        }
        terms["loss"] = (
            self.mask_weight * terms["mask"]
            + self.mask_edge_weight * terms["mask_edge"]
            + self.image_edge_weight * terms["image_edge"]
        )
        return terms
