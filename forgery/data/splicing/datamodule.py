"""LightningDataModule for image-splicing localization datasets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from forgery.data.base import ForgeryDataModule
from forgery.data.splicing.dataset import SplicingDataset
from forgery.data.splicing.io import DataError
from forgery.data.splicing.sources import SplicingRecord, index_dataset
from forgery.data.splicing.synth import build_splicing_synth, read_split
from forgery.errors import ConfigError

__all__ = ["SplicingDataModule", "carve_splits"]

log = logging.getLogger(__name__)

SYNTH = "splicing_synth"


def carve_splits(
    records: list[SplicingRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[SplicingRecord]]:
    """Deterministic train/val/test split of one dataset (shuffled by ``seed``, never by file order)."""
    if not 0.0 <= val_fraction + test_fraction <= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must lie in [0, 1], got {val_fraction + test_fraction}"
        )
    order = np.random.default_rng(seed).permutation(len(records))
    n_test = round(len(records) * test_fraction)
    n_val = round(len(records) * val_fraction)
    pick = [records[i] for i in order]
    return {
        "test": sorted(pick[:n_test], key=lambda r: r.id),
        "val": sorted(pick[n_test : n_test + n_val], key=lambda r: r.id),
        "train": sorted(pick[n_test + n_val :], key=lambda r: r.id),
    }


class SplicingDataModule(ForgeryDataModule):
    """Splicing data selected by name (``data=casia2`` etc.).

    Real datasets are indexed with :func:`~forgery.data.splicing.sources.index_dataset` and split by
    ``split.val_fraction`` / ``split.test_fraction`` (validation is carved from the training data, never from
    the test set); ``test`` may name a separate dataset to test on instead. ``splicing_synth`` is generated on
    first use under ``root`` and has its own disjoint splits.

    Args:
        name: dataset name (see ``forgery.data.splicing.sources.DATASETS`` and ``splicing_synth``).
        root: dataset root (or the cache folder of ``splicing_synth``).
        options: extra keyword arguments of the dataset's indexer (e.g. ``index`` for nist16).
        image_size: training/evaluation size S (divisible by 16).
        resize: size policy for training (``resize`` | ``pad_crop``).
        eval_resize: size policy for validation/test (``resize`` | ``pad_crop`` | ``none``).
        batch_size: training batch size (per process).
        eval_batch_size: validation/test batch size (1 when ``eval_resize=none``).
        num_workers: data-loading workers.
        split: ``{val_fraction, test_fraction, seed}``.
        test: optional ``{name, root, options}`` of a separate test dataset.
        synth: parameters of :func:`build_splicing_synth`.
        on_error: ``raise`` stops at the first bad image or mask with its file name and the problem; ``skip``
            skips such samples and counts them (``<stage>/skipped`` in the logs and metrics.json).
    """

    kind = "splicing"

    def __init__(
        self,
        name: str = SYNTH,
        root: str = "data/splicing_synth",
        options: Mapping[str, Any] | None = None,
        image_size: int = 384,
        resize: str = "resize",
        eval_resize: str = "resize",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        split: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        synth: Mapping[str, Any] | None = None,
        on_error: str = "raise",
    ) -> None:
        super().__init__(name, on_error)
        self.save_hyperparameters(logger=False)
        self.root = root
        self.options = dict(options or {})
        self.split = {"val_fraction": 0.1, "test_fraction": 0.0, "seed": 0, **dict(split or {})}
        self.test_spec = dict(test) if test else None
        self.synth = dict(synth or {})
        self.records: dict[str, list[SplicingRecord]] = {}

    @property
    def test_name(self) -> str:
        """Name of the dataset the test split comes from."""
        return self.test_spec["name"] if self.test_spec else self.name

    def prepare_data(self) -> None:
        if self.name == SYNTH:
            build_splicing_synth(self.root, **self.synth)

    def _index(self, name: str, root: str, options: Mapping[str, Any]) -> list[SplicingRecord]:
        if root is not None and not Path(root).exists():
            raise DataError(f"{root}: dataset root of {name!r} does not exist (set data.root=...)")
        return index_dataset(name, root, **dict(options))

    def setup(self, stage: str | None = None) -> None:
        if self.records:
            return
        tag = None
        if self.name == SYNTH:
            tag = build_splicing_synth(self.root, **self.synth)
            self.records = {
                s: [_synth_record(r) for r in read_split(tag, s)] for s in ("train", "val", "test")
            }
        else:
            recs = self._index(self.name, self.root, self.options)
            self.records = carve_splits(
                recs, self.split["val_fraction"], self.split["test_fraction"], self.split["seed"]
            )
        if self.test_spec:
            self.records["test"] = self._index(
                self.test_spec["name"], self.test_spec["root"], self.test_spec.get("options") or {}
            )
        hp = self.hparams
        for s, recs in self.records.items():
            self.datasets[s] = SplicingDataset(
                recs,
                hp.image_size,
                hp.resize if s == "train" else hp.eval_resize,
                train=(s == "train"),
                on_error=hp.on_error,
            )
        sizes = {s: len(r) for s, r in self.records.items()}
        where = tag if self.name == SYNTH else self.root
        log.info("splicing data %s in %s (test: %s): %s", self.name, where, self.test_name, sizes)

    def loader_batch_size(self, split: str) -> int | None:
        native = split != "train" and self.hparams.eval_resize in ("none", "tile")  # sizes differ per image
        return 1 if native else None

    def empty_split_error(self, split: str) -> Exception:
        return DataError(f"{self.name}: the {split} split is empty (check data.split / data.test)")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


def _synth_record(row: Mapping[str, Any]) -> SplicingRecord:
    label = int(row["label"])
    return SplicingRecord(
        id=str(row["id"]),
        image=Path(row["image"]),
        mask=Path(row["mask"]) if label else None,
        label=label,
        mask_rule="lum127",
    )
