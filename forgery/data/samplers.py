"""Samplers and the DataLoader factory shared by the data modules."""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["eval_sampler", "make_loader"]


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Validation/test sampler under DDP: each sample on exactly one rank, none repeated.

    Lightning's default ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating
    samples, which would count them twice in the metrics. Returns None (plain sequential order) outside DDP.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None


def make_loader(
    dataset: Dataset,
    split: str,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """Training loaders shuffle and drop an incomplete last batch; validation/test loaders keep order and,
    under DDP, give each sample to exactly one rank (:func:`eval_sampler`)."""
    train = split == "train"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        sampler=None if train else eval_sampler(dataset),
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=train and len(dataset) > batch_size,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
