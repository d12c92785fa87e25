"""MTSE-Net: Multi-Task SE-Network for image splicing localization.

Zhang et al., "Multi-Task SE-Network for Image Splicing Localization", IEEE TCSVT 32(7), 2022.

Two U-Net style streams share the input:

* the **edge-guided stream** (all levels ``w`` channels) learns image edges; its features pass through
  **feature adaptation layers** (FAL, 1x1 conv + ReLU) and are concatenated into the label-mask stream;
* the **label-mask stream** (widths w, 2w, 4w, 8w, 8w) localizes the spliced region;
* **low-level features** are taken straight from the (strided-conv downsampled) RGB input and fused into
  every decoder stage, together with the edge decoder's feature; a **SEAM** (squeeze-and-excitation) block
  recalibrates that concatenation before a 3x3 conv.

Three heads: label mask (2-class logits), mask edge (2-class logits) and image edge (1 channel, unbounded).

Dataflow, exactly the official code's (``Movenet7f4attention_adaption.py``). Level k = 1..5 is at H/2^(k-1);
``E_k`` / ``M_k`` are the edge / mask stream 3x3 conv outputs, ``e_k`` / ``m_k`` their 4x4 stride-2
downsampling, ``FAL(t) = ReLU(conv1x1(t))`` (BN inside only at encoder level 1), ``L_k`` the low-level
convs, ``up(t)`` = bilinear x2 then 1x1 conv:

* encoder: ``E_(k+1) = conv(e_k)``; ``M_(k+1) = conv([m_k, e_k + FAL(e_k)])`` for k = 1..3 and
  ``M_5 = conv([m_4, FAL(e_4)])``;
* bottleneck: the mask decoder starts from ``X_4 = [M_5, E_5 + FAL(E_5)]``;
* edge decoder, k = 4..1: ``u_k = up(d_(k+1)) + E_k`` (``d_5 = E_5``), ``d_k = conv(u_k)``; the edge feature
  fused at level k is ``f_4 = d_4 + u_4``, ``f_3 = d_3 + FAL(d_3)``, ``f_2 = u_2 + FAL(d_2)``,
  ``f_1 = d_1 + FAL(d_1)``;
* mask decoder: ``X_(k-1) = conv(SEAM([up(X_k) + M_k, L_k, f_k]))``;
* heads: label mask and mask edge from ``X_0``, image edge from ``d_1``.

Four points of that dataflow read like slips in the official code but are kept on purpose, because they
produced the paper's numbers and the released weights expect them: ``M_5`` takes the level-4 FAL branch
without its residual; ``f_4`` has no FAL (the official ``deconv44ada`` is declared but never called; it is
left out here); the residual of ``f_2`` is the pre-conv sum ``u_2``; the edge decoder carries the conv
output ``d_k`` down, not the FAL-refined ``f_k``, and the image-edge head reads ``d_1``.
``tests/test_official.py`` checks every output, loss term and gradient against the official code.

Unlike the official code (which hard-codes 384x384 upsampling sizes) the network is fully convolutional and
accepts any H, W divisible by 16. At base width 32 it has 3,939,744 parameters (the official model reports
3,940,800, including the 1,056 of the never-called ``deconv44ada``). ``forgery.models.official`` loads the
official weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.errors import ConfigError
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
    """FAL branch: ReLU(BN?(conv1x1(x))). Its residual add is the caller's: it differs between levels."""

    def __init__(self, channels: int, norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 1)]
        if norm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU(inplace=True))
        self.adapt = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.adapt(x)


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
        # FALs on the edge stream's downsampled features e_1..e_4; BN only at the first one.
        self.fal = nn.ModuleList([FeatureAdaptation(w, norm=(i == 0)) for i in range(4)])

        # Label-mask encoder: M1 from RGB, M(k+1) from [m_k, e_k + FAL(e_k)] (M5: [m_4, FAL(e_4)]).
        self.mask_enc = nn.ModuleList(
            [ConvBNReLU(in_chans, mask_widths[0])]
            + [ConvBNReLU(mask_widths[k - 1] + w, mask_widths[k]) for k in range(1, 5)]
        )
        self.mask_down = nn.ModuleList([ConvBNReLU(c, c, 4, 2) for c in mask_widths[:4]])

        # Low-level features straight from the input: L1..L4 at H, H/2, H/4, H/8 (no BN, no activation).
        self.low_level = nn.ModuleList(
            [nn.Conv2d(in_chans, w, kernel_size=s, stride=s) for s in (1, 2, 4, 8)]
        )

        # Bottleneck FAL: the mask decoder starts from [M5, E5 + FAL(E5)].
        self.bottleneck_fal = FeatureAdaptation(w)

        # Decoder, index 0..3 = levels 1..4.
        dec_in = [mask_widths[k + 1] for k in range(4)]  # width of the level below's output
        dec_in[3] = mask_widths[4] + w
        self.mask_up = nn.ModuleList([UpProject(dec_in[k], mask_widths[k]) for k in range(4)])
        self.edge_up = nn.ModuleList([UpProject(w, w) for _ in range(4)])
        self.edge_dec = nn.ModuleList([ConvBNReLU(w, w) for _ in range(4)])
        # decoder FALs at levels 1..3 (level 4 has none: the official deconv44ada is never called)
        self.edge_dec_fal = nn.ModuleList([FeatureAdaptation(w) for _ in range(3)])
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
            raise ConfigError(f"MTSENet needs H and W divisible by {f}, got {h}x{w}")

        edges: list[Tensor] = [self.edge_enc[0](images)]
        masks: list[Tensor] = [self.mask_enc[0](images)]
        for k in range(4):
            e = self.edge_down[k](edges[k])
            m = self.mask_down[k](masks[k])
            adapted = self.fal[k](e)
            side = adapted if k == 3 else e + adapted  # official: M5 takes FAL(e_4) without the residual
            masks.append(self.mask_enc[k + 1](torch.cat([m, side], dim=1)))
            edges.append(self.edge_enc[k + 1](e))
        lows = [conv(images) for conv in self.low_level]

        bottom = edges[4]
        mask_x = torch.cat([masks[4], bottom + self.bottleneck_fal(bottom)], dim=1)
        edge_x = bottom  # d_(k+1): the edge decoder's conv output, carried down without its FAL
        for k in reversed(range(4)):
            size = masks[k].shape[-2:]
            summed = self.edge_up[k](edge_x, size) + edges[k]  # u_k
            edge_x = self.edge_dec[k](summed)  # d_k
            if k == 3:  # official: no FAL at level 4
                edge_feat = edge_x + summed
            elif k == 1:  # official: the level-2 residual is the pre-conv sum
                edge_feat = summed + self.edge_dec_fal[k](edge_x)
            else:
                edge_feat = edge_x + self.edge_dec_fal[k](edge_x)
            mask_d = self.mask_up[k](mask_x, size) + masks[k]
            fused = self.seam[k](torch.cat([mask_d, lows[k], edge_feat], dim=1))
            mask_x = self.fuse[k](fused)

        return MTSEOutput(
            mask_logits=self.mask_head(mask_x),
            mask_edge_logits=self.mask_edge_head(mask_x),
            image_edge=self.image_edge_head(edge_x),
        )


def mtse_net(**kwargs) -> MTSENet:
    """Factory for Hydra (``_target_: forgery.models.mtse_net.mtse_net``)."""
    return MTSENet(**kwargs)
