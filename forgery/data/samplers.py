"""Samplers shared by the data modules."""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler

__all__ = ["eval_sampler"]


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Validation/test sampler under DDP: each sample on exactly one rank, none repeated.

    Lightning's default ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating
    samples, which would count them twice in the metrics. Returns None (plain sequential order) outside DDP.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None
