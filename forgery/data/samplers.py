"""Samplers and the DataLoader factory shared by the data modules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from forgery.errors import ConfigError
from forgery.utils.seeding import global_seed

__all__ = [
    "GlobalBatchSampler",
    "ResumableLoader",
    "datamodule_loader",
    "eval_sampler",
    "make_loader",
    "train_resume_point",
]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class GlobalBatchSampler(DistributedSampler):
    """Training order as a pure function of ``(seed, epoch)``, cut into global batches, resumable mid-epoch.

    Each epoch is one seeded permutation of the dataset. Step ``t`` uses the global batch
    ``perm[t*G:(t+1)*G]`` with ``G = batch_size * world_size``; rank ``r`` takes the ``r``-th slice of it.
    So a 2-process run and a 1-process run with twice the batch see exactly the same global batches, and
    the incomplete last global batch is dropped. ``skip_batches`` (set when resuming from a checkpoint
    saved mid-epoch) drops the first batches of the next iteration only. ``epoch_fn`` (the trainer's
    ``current_epoch``) is read at each iteration: Lightning's ``set_epoch`` value runs one ahead after a
    resume from an end-of-epoch checkpoint (its ``processed`` counter is advanced twice).

    It subclasses ``DistributedSampler`` so that Lightning keeps it under DDP (and calls ``set_epoch``).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        world, this_rank = _world()
        num_replicas = world if num_replicas is None else num_replicas
        rank = this_rank if rank is None else rank
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size = int(batch_size)
        n, global_batch = len(dataset), self.batch_size * num_replicas
        if n >= global_batch:
            self.steps, self.num_samples = n // global_batch, (n // global_batch) * self.batch_size
        else:  # a dataset smaller than one global batch: one step over what there is, split across ranks
            self.steps, self.num_samples = 1, math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.skip_batches = 0
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[int]:
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        skip, self.skip_batches = self.skip_batches, 0
        if len(perm) < self.batch_size * self.num_replicas:
            return iter(perm[self.rank :: self.num_replicas] if skip == 0 else [])
        b, gb = self.batch_size, self.batch_size * self.num_replicas
        starts = (t * gb + self.rank * b for t in range(skip, self.steps))
        return iter([i for s in starts for i in perm[s : s + b]])

    def __len__(self) -> int:
        return self.num_samples


class ResumableLoader(DataLoader):
    """A training DataLoader whose position Lightning may treat as restorable: its
    :class:`GlobalBatchSampler` order is a function of (seed, epoch), and :func:`make_loader` builds it at
    the restored (epoch, batch) from the trainer's own counters, so there is no state of its own to save."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Validation/test sampler under DDP: each sample on exactly one rank, none repeated.

    Lightning's default ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating
    samples, which would count them twice in the metrics. Returns None (plain sequential order) outside DDP.
    """
    world, _ = _world()
    if world > 1:
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None


def train_resume_point(trainer: Any) -> tuple[int, int]:
    """(epoch, batches of it already trained) of a trainer restored from a checkpoint; (0, 0) otherwise.

    Lightning restores its loop counters before it asks for the training loader, so a loader built then
    can start where the checkpoint left off (a checkpoint saved at an epoch's end skips that whole epoch,
    which Lightning then closes without running a batch).
    """
    if trainer is None or not getattr(trainer, "ckpt_path", None):
        return trainer.current_epoch if trainer is not None else 0, 0
    epochs = trainer.fit_loop.epoch_progress.current
    batches = trainer.fit_loop.epoch_loop.batch_progress.current
    if epochs.processed > epochs.completed:  # saved after the epoch's last batch, before its end hooks
        return epochs.processed, 0
    return epochs.completed, batches.processed


GPU_PREFETCH_FACTOR = 4  # batches each worker keeps ready when training on a GPU (torch's default: 2)


def _on_cuda(trainer: Any) -> bool:
    """Whether the loader feeds a GPU: the trainer's root device, or (no trainer) a visible GPU."""
    if trainer is not None:
        try:
            return trainer.strategy.root_device.type == "cuda"
        except AttributeError:
            return False
    return torch.cuda.is_available()


def make_loader(
    dataset: Dataset,
    split: str,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool | str = "auto",
    collate_fn: Callable | None = None,
    seed: int | None = None,
    trainer: Any = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """Training loaders draw a :class:`GlobalBatchSampler` order (seeded, resumable from ``trainer``'s
    restored position); validation/test loaders keep order and, under DDP, give each sample to exactly one
    rank (:func:`eval_sampler`). ``seed`` defaults to the run's seed (:func:`global_seed`).

    Workers persist across epochs. ``pin_memory="auto"`` pins batches when they go to a GPU;
    ``prefetch_factor`` None keeps torch's 2 batches per worker on CPU and uses :data:`GPU_PREFETCH_FACTOR`
    on a GPU."""
    on_cuda = _on_cuda(trainer)
    if pin_memory == "auto":
        pin_memory = on_cuda
    elif not isinstance(pin_memory, bool):
        raise ConfigError(f"pin_memory must be true, false or auto, got {pin_memory!r}")
    if prefetch_factor is None and num_workers > 0:
        prefetch_factor = GPU_PREFETCH_FACTOR if on_cuda else 2
    if split == "train":
        epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else None
        seed = global_seed() if seed is None else seed
        sampler = GlobalBatchSampler(dataset, batch_size, seed=seed, epoch_fn=epoch_fn)
        epoch, skip = train_resume_point(trainer)
        # a checkpoint saved after an epoch's last batch: that epoch is closed without batches, the next
        # starts whole
        sampler.epoch, sampler.skip_batches = epoch, (0 if skip >= sampler.steps else skip)
    else:
        sampler = eval_sampler(dataset)
    return (ResumableLoader if split == "train" else DataLoader)(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        collate_fn=collate_fn,
    )


def datamodule_loader(
    datamodule: Any, dataset: Dataset, split: str, collate_fn: Callable, batch_size: int | None = None
) -> DataLoader:
    """:func:`make_loader` with a datamodule's settings: ``batch_size`` (training) or ``eval_batch_size``
    (falling back to ``batch_size``) unless one is given, ``num_workers``, ``pin_memory`` and its trainer."""
    hp = datamodule.hparams
    if batch_size is None:
        batch_size = hp.batch_size if split == "train" else (hp.eval_batch_size or hp.batch_size)
    return make_loader(
        dataset,
        split,
        batch_size,
        hp.num_workers,
        hp.pin_memory,
        collate_fn,
        trainer=datamodule.trainer,
    )
