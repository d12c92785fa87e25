"""Activation settings that change speed, not results."""

from __future__ import annotations

from torch import nn

__all__ = ["out_of_place_silu"]


def out_of_place_silu(module: nn.Module) -> int:
    """Switches every in-place ``nn.SiLU`` under ``module`` to out-of-place; returns how many.

    SiLU's gradient needs its input, so under autograd an in-place SiLU makes a full copy of it first
    (timm's EfficientNets use ``SiLU(inplace=True)`` after every BatchNorm): out of place, the copy is gone
    and the math is the same.
    """
    changed = 0
    for m in module.modules():
        if isinstance(m, nn.SiLU) and m.inplace:
            m.inplace = False
            changed += 1
    return changed
