"""The data-module contract every forgery LightningDataModule follows, and what they share.

A :class:`ForgeryDataModule` has a ``kind`` (the task: ``splicing`` | ``faces``, checked against the model
before any work), ``datasets`` and ``records`` per split (``train``, ``val``, ``test``), the name of the
dataset its test split comes from (``test_name``), the ``on_error`` policy for bad samples, and loaders
built by :func:`~forgery.data.samplers.datamodule_loader` with :func:`collate_skipping`, which drops and
counts the samples ``on_error=skip`` turned into None.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import default_collate

from forgery.data.samplers import datamodule_loader
from forgery.errors import ConfigError

__all__ = ["ON_ERROR", "SPLITS", "ForgeryDataModule", "check_on_error", "collate_skipping"]

ON_ERROR = ("raise", "skip")
SPLITS = ("train", "val", "test")


def check_on_error(value: str) -> str:
    """``value`` if it is a known ``on_error`` policy; ValueError naming the choices otherwise."""
    if value not in ON_ERROR:
        raise ConfigError(f"on_error must be {' or '.join(ON_ERROR)}, got {value!r}")
    return value


def collate_skipping(samples: list[dict | None]) -> dict:
    """Default collation of the samples that loaded; ``n_skipped`` counts those that did not (None).

    Raises:
        ValueError: images of different sizes in one batch (native-size evaluation with a batch size above 1).
    """
    kept = [s for s in samples if s is not None]
    sizes = {tuple(s["image"].shape[-2:]) for s in kept if "image" in s}
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        raise ValueError(
            f"images of different sizes (H x W: {shown}) in one batch: native-size evaluation "
            "(data.eval_resize=none|tile) needs data.eval_batch_size=1 unless all images have one size"
        )
    batch = default_collate(kept) if kept else {}
    batch["n_skipped"] = torch.tensor(len(samples) - len(kept))
    return batch


class ForgeryDataModule(pl.LightningDataModule):
    """Base of the splicing and face data modules (see the module docstring for the contract).

    Subclasses set ``kind``, fill ``datasets`` (and ``records``) in ``setup`` and may override
    :meth:`loader_batch_size` and :meth:`empty_split_error`.
    """

    kind: ClassVar[str] = "generic"
    records: dict[str, list[Any]]

    def __init__(self, name: str, on_error: str = "raise") -> None:
        super().__init__()
        self.name = name
        self.on_error = check_on_error(on_error)
        self.datasets: dict[str, Dataset] = {}

    @property
    def test_name(self) -> str:
        """Name of the dataset the test split comes from."""
        return self.name

    def loader_batch_size(self, split: str) -> int | None:
        """Batch size of ``split``'s loader; None: ``batch_size`` (train) or ``eval_batch_size``."""
        return None

    def empty_split_error(self, split: str) -> Exception:
        """The error for a loader asked of an empty split."""
        return ValueError(f"{self.name}: the {split} split is empty")

    def _loader(self, split: str) -> DataLoader:
        dataset = self.datasets.get(split)
        if dataset is None or len(dataset) == 0:
            raise self.empty_split_error(split)
        return datamodule_loader(self, dataset, split, collate_skipping, self.loader_batch_size(split))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
