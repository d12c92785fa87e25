"""MTSE-Net: Multi-Task SE-Network for image splicing localization.

Zhang et al., "Multi-Task SE-Network for Image Splicing Localization", IEEE TCSVT 32(7), 2022.

Two U-Net style streams share the input:

* the **edge-guided stream** (all levels ``w`` channels) learns image edges; at every level its downsampled
  feature goes through a **feature adaptation layer** (FAL, 1x1 conv + ReLU with a residual add) and is
  concatenated into the label-mask stream;
* the **label-mask stream** (widths w, 2w, 4w, 8w, 8w) localizes the spliced region;
* **low-level features** are taken straight from the (strided-conv downsampled) RGB input and fused into
  every decoder stage, together with the edge decoder's feature; a **SEAM** (squeeze-and-excitation) block
  recalibrates that concatenation before a 3x3 conv.

Three heads: label mask (2-class logits), mask edge (2-class logits) and image edge (1 channel, unbounded).
The layout follows the official code; unlike it (which hard-codes 384x384 upsampling sizes) the network is
fully convolutional and accepts any H, W divisible by 16. At base width 32 it has 3,939,744 parameters (the
official model reports 3,940,800 including a 1,056-parameter 1x1 conv that its forward never uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.models.layers import SqueezeExcite

__all__ = ["MTSENet", "MTSEOutput", "mtse_net"]


@dataclass
class MTSEOutput:
    """Outputs of :class:`MTSENet` for images (B, 3, H, W).

    Attributes:
        mask_logits: (B, 2, H, W) label-mask logits (class 1 = tampered).
        mask_edge_logits: (B, 2, H, W) mask-edge logits (class 1 = edge of the tampered region).
        image_edge: (B, 1, H, W) unbounded image-edge regression.
    """

    mask_logits: Tensor
    mask_edge_logits: Tensor
    image_edge: Tensor

    @property
    def mask_prob(self) -> Tensor:
        """(B, H, W) probability that each pixel is tampered."""
        return self.mask_logits.float().softmax(dim=1)[:, 1]

    @property
    def mask_edge_prob(self) -> Tensor:
        """(B, H, W) probability that each pixel lies on the tampered region's boundary."""
        return self.mask_edge_logits.float().softmax(dim=1)[:, 1]


class ConvBNReLU(nn.Sequential):
    """The paper's "conv": k x k convolution + BatchNorm + ReLU (padding keeps H/stride exactly)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        padding = (kernel_size - stride + 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class FeatureAdaptation(nn.Module):
    """FAL: x + ReLU(BN?(conv1x1(x))). Adapts edge-stream features before they join the mask stream."""

    def __init__(self, channels: int, norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 1)]
        if norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU(inplace=True))
        self.adapt = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.adapt(x)


class UpProject(nn.Module):
    """Bilinear x2 upsampling followed by a 1x1 conv (no BN) to the skip connection's width."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.proj(F.interpolate(x, size=size, mode="bilinear", align_corners=False))


class MTSENet(nn.Module):
    """Multi-Task SE-Network (edge-guided stream + label-mask stream, FALs, low-level fusion, SEAM).

    Args:
        in_chans: input channels (RGB = 3).
        width: base width w of the edge stream and of the first mask level.
        se_reduction: SEAM reduction ratio.
        num_classes: classes of the label-mask and mask-edge heads (2 in the paper).
    """

    def __init__(
        self, in_chans: int = 3, width: int = 32, se_reduction: int = 16, num_classes: int = 2
    ) -> None:
        super().__init__()
        w = width
        mask_widths = (w, 2 * w, 4 * w, 8 * w, 8 * w)  # M1..M5
        self.width = w
        self.downsample_factor = 16

        # Edge-guided encoder: E1..E5, each a 3x3 conv; a 4x4 stride-2 conv between levels.
        self.edge_enc = nn.ModuleList([ConvBNReLU(in_chans, w)] + [ConvBNReLU(w, w) for _ in range(4)])
        self.edge_down = nn.ModuleList([ConvBNReLU(w, w, 4, 2) for _ in range(4)])
        # FALs on the edge stream's downsampled features (levels 2..5); BN only at the first one.
        self.fal = nn.ModuleList([FeatureAdaptation(w, norm=(i == 0)) for i in range(4)])

        # Label-mask encoder: M1 from RGB, Mk from [down(M(k-1)), FAL(down(E(k-1)))].
        self.mask_enc = nn.ModuleList(
            [ConvBNReLU(in_chans, mask_widths[0])]
            + [ConvBNReLU(mask_widths[k - 1] + w, mask_widths[k]) for k in range(1, 5)]
        )
        self.mask_down = nn.ModuleList([ConvBNReLU(c, c, 4, 2) for c in mask_widths[:4]])

        # Low-level features straight from the input: L1..L4 at H, H/2, H/4, H/8 (no BN, no activation).
        self.low_level = nn.ModuleList(
            [nn.Conv2d(in_chans, w, kernel_size=s, stride=s) for s in (1, 2, 4, 8)]
        )

        # Decoder, index 0..3 = levels 1..4. Mask path input of level 4 is [M5, edge bottleneck E5].
        dec_in = [mask_widths[k + 1] for k in range(4)]  # width of the level below's output
        dec_in[3] = mask_widths[4] + w
        self.mask_up = nn.ModuleList([UpProject(dec_in[k], mask_widths[k]) for k in range(4)])
        self.edge_up = nn.ModuleList([UpProject(w, w) for _ in range(4)])
        self.edge_dec = nn.ModuleList([ConvBNReLU(w, w) for _ in range(4)])
        self.edge_dec_fal = nn.ModuleList([FeatureAdaptation(w) for _ in range(4)])
        fused = [mask_widths[k] + 2 * w for k in range(4)]  # [mask D, L_k, edge decoder feature]
        self.seam = nn.ModuleList([SqueezeExcite(c, se_reduction, bias=False) for c in fused])
        self.fuse = nn.ModuleList([ConvBNReLU(fused[k], mask_widths[k]) for k in range(4)])

        self.mask_head = nn.Conv2d(w, num_classes, 3, padding=1, bias=False)
        self.mask_edge_head = nn.Conv2d(w, num_classes, 3, padding=1, bias=False)
        self.image_edge_head = nn.Conv2d(w, 1, 3, padding=1, bias=False)

    def forward(self, images: Tensor) -> MTSEOutput:
        """images: (B, 3, H, W), H and W divisible by 16 -> :class:`MTSEOutput` at (H, W)."""
        h, w = images.shape[-2:]
        f = self.downsample_factor
        if h % f or w % f:
            raise ValueError(f"MTSENet needs H and W divisible by {f}, got {h}x{w}")

        edges: list[Tensor] = [self.edge_enc[0](images)]
        masks: list[Tensor] = [self.mask_enc[0](images)]
        for k in range(4):
            e = self.edge_down[k](edges[k])
            m = self.mask_down[k](masks[k])
            masks.append(self.mask_enc[k + 1](torch.cat([m, self.fal[k](e)], dim=1)))
            edges.append(self.edge_enc[k + 1](e))
        lows = [conv(images) for conv in self.low_level]

        mask_x = torch.cat([masks[4], edges[4]], dim=1)
        edge_x = edges[4]
        for k in reversed(range(4)):
            size = masks[k].shape[-2:]
            edge_x = self.edge_up[k](edge_x, size) + edges[k]
            edge_x = self.edge_dec_fal[k](self.edge_dec[k](edge_x))
            mask_d = self.mask_up[k](mask_x, size) + masks[k]
            fused = self.seam[k](torch.cat([mask_d, lows[k], edge_x], dim=1))
            mask_x = self.fuse[k](fused)

        return MTSEOutput(
            mask_logits=self.mask_head(mask_x),
            mask_edge_logits=self.mask_edge_head(mask_x),
            image_edge=self.image_edge_head(edge_x),
        )


def mtse_net(**kwargs) -> MTSENet:
    """Factory for Hydra (``_target_: forgery.models.mtse_net.mtse_net``)."""
    return MTSENet(**kwargs)
