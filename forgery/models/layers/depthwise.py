"""A faster weight gradient for 5x5 depthwise convolutions on small CPU feature maps.

oneDNN (PyTorch's CPU convolutions) computes the weight gradient of a depthwise convolution with a 5x5
kernel on small maps very slowly: on EfficientNet-B4's 12 x 12 stage (1632 channels, batch 2) it takes
~27 ms, 50x its forward pass, while the same sums computed tap by tap take ~5 ms (measured on this
project's CPU; 3x3 kernels and larger maps are fast in oneDNN and left to it). :func:`fast_depthwise_grads`
routes exactly those convolutions of a network (CPU, float32, gradient needed, kernel >= 5, batch x output
pixels <= :data:`SMALL_MAP`) through an autograd function whose forward and input gradient are oneDNN's
and whose weight gradient is the tap-by-tap sum. Same parameters, same math, to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SMALL_MAP", "FastDepthwiseConv2d", "depthwise_weight_grad", "fast_depthwise_grads"]

SMALL_MAP = 512  # batch x output height x output width at or below which the tap-by-tap gradient is used
MIN_KERNEL = 5


def depthwise_weight_grad(
    grad_out: Tensor,
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """d loss / d weight (C, 1, kh, kw) of a depthwise convolution from its output gradient (B, C, Ho, Wo)
    and input (B, C, H, W): for each tap, the sum over batch and space of grad_out times the shifted input."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    ph, pw = padding
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    ho, wo = grad_out.shape[-2:]
    grad = grad_out.new_empty(grad_out.shape[1], kh, kw)
    for i in range(kh):
        for j in range(kw):
            shifted = xp[
                :, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw
            ]
            grad[:, i, j] = (grad_out * shifted).sum(dim=(0, 2, 3))
    return grad.unsqueeze(1)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, conv: nn.Conv2d) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conv = conv
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        conv: nn.Conv2d = ctx.conv
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out,
                x,
                weight,
                None,
                list(conv.stride),
                list(conv.padding),
                list(conv.dilation),
                False,
                [0, 0],
                conv.groups,
                [True, False, False],
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(
                grad_out,
                x,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,  # type: ignore[arg-type]
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None


class FastDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` (depthwise) whose weight gradient on small CPU maps is :func:`depthwise_weight_grad`."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and not torch.is_autocast_enabled("cpu")
        ):
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
            )
            ho = (x.shape[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (x.shape[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            if x.shape[0] * ho * wo <= SMALL_MAP:
                return _DepthwiseConv.apply(x, self.weight, self.bias, self)
        return super().forward(x)


def fast_depthwise_grads(module: nn.Module) -> int:
    """Routes the depthwise ``nn.Conv2d`` layers of ``module`` with kernels >= 5 (zero, numeric padding)
    through the faster weight gradient when their output map is small (see the module docstring); returns
    how many layers were switched. Other devices, dtypes, autocast and inference run the layer unchanged."""
    n = 0
    for m in module.modules():
        if (
            type(m) is nn.Conv2d
            and m.groups == m.in_channels == m.out_channels
            and min(m.kernel_size) >= MIN_KERNEL
            and m.padding_mode == "zeros"
            and not isinstance(m.padding, str)
        ):
            m.__class__ = FastDepthwiseConv2d  # same module, parameters and state-dict names
            n += 1
    return n
