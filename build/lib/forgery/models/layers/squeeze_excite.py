"""Squeeze-and-excitation attention (SEAM in MTSE-Net).

Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018. MTSE-Net's SEAM uses bias-free fully connected
layers and a reduction of 16.
"""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """Channel recalibration: x * sigmoid(FC(ReLU(FC(GAP(x))))).

    Args:
        channels: input channels C.
        reduction: hidden width is C // reduction.
        bias: whether the two FC layers have a bias (MTSE-Net: no).
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        w = x.mean(dim=(2, 3))
        w = self.gate(self.fc2(self.act(self.fc1(w))))
        return x * w[:, :, None, None]
