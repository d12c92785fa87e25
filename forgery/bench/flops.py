"""FLOPs of a piece of work, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The counter sees the aten matmuls and convolutions (forward and backward): elementwise work (BatchNorm,
activations, the optimizer) is not counted, so achieved FLOP/s are a lower bound on the work done.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops"]


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of ``fn`` (eager; run it outside ``torch.compile``)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())
