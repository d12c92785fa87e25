"""Randomness keyed by (run seed, step, rank): reproducible, different on every rank, exact on resume."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["global_seed", "step_seed", "step_rng"]


def global_seed() -> int:
    """The run's seed (``seed=`` in the config, exported by ``seed_everything``); 0 when none was set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def step_seed(step: int, rank: int, stream: int, seed: int | None = None) -> int:
    """A 63-bit seed that is a pure function of ``(seed, step, rank, stream)``."""
    s = global_seed() if seed is None else seed
    return int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(s)).item()) ^ (
        (step * 1_000_003 + rank * 7919 + stream * 104_729) % 2**62
    )


@contextmanager
def step_rng(step: int, rank: int, stream: int, device: torch.device | None = None) -> Iterator[None]:
    """Within the block, torch's global RNG (CPU, and ``device`` if CUDA) is seeded by :func:`step_seed`;
    the previous state is restored afterwards.

    Training draws (augmentation, dropout, AGDA) made inside it depend only on the step and the rank, not on
    how many draws came before: a run resumed from any checkpoint draws exactly what the uninterrupted run
    drew, and each DDP rank draws differently.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(step_seed(step, rank, stream))
        yield
