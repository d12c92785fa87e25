"""FLOPs of a piece of work, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The counter sees the aten matmuls and convolutions (forward and backward): elementwise work (BatchNorm,
activations, the optimizer) is not counted, so achieved FLOP/s are a lower bound on the work done.

torch's formula for ``convolution_backward`` ignores ``groups`` in the weight gradient, which counts a
depthwise convolution's weight gradient ``channels`` times over (MAT's EfficientNet training step came out
at 20x its forward, 233% of the machine's matmul peak). :func:`conv_backward_flop` counts each of the input
and weight gradients as one forward convolution, which is exact for grouped convolutions too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["conv_backward_flop", "conv_flop", "count_flops"]


def conv_flop(
    x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int], transposed: bool
) -> int:
    """FLOPs (2 per multiply-add) of a convolution: batch x weight elements (``C_out x C_in/groups x k...``)
    x the positions the weight is applied at (the output's, or the input's for a transposed convolution)."""
    positions = prod(x_shape[2:]) if transposed else prod(out_shape[2:])
    return 2 * x_shape[0] * prod(w_shape) * positions


def conv_backward_flop(
    grad_out_shape: Sequence[int],
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: Any,
    output_mask: Sequence[bool],
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``: one forward convolution per gradient asked for (input,
    weight); the bias gradient is a sum and not counted."""
    forward = conv_flop(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of ``fn`` (eager; run it outside ``torch.compile``)."""
    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop}
    )
    with counter:
        fn()
    return int(counter.get_total_flops())
