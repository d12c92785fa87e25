"""LightningDataModule for face-forgery detection (face crops -> frame and video scores)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from forgery.data.faces.dataset import FaceFrameDataset
from forgery.data.faces.sources import FaceDataError, index_videos
from forgery.data.faces.synth import build_faces_synth
from forgery.data.samplers import make_loader

__all__ = ["FaceDataModule"]

log = logging.getLogger(__name__)

SYNTH = "faces_synth"


class FaceDataModule(pl.LightningDataModule):
    """Face crops by split, from an extraction ``index.csv`` (``forgery-faces``), a ``frames`` layout, or the
    embedded ``faces_synth`` (built on first use).

    Train/val/test follow the dataset's official splits, recorded in the index's ``split`` column; model
    selection uses val, never test.

    Args:
        name: ``faces_synth`` | ``ffpp`` | ``celebdf`` | ``dfdc`` | ``frames``.
        root: for ``frames``, the folder of per-video frame folders; for ``faces_synth``, its cache folder;
            otherwise the folder ``forgery-faces`` wrote (holding ``index.csv``).
        index: the crops' ``index.csv`` (default ``<root>/index.csv``).
        options: ``frames`` indexer options (e.g. ``manifest``).
        image_size: crops are resized to S x S (MAT: 380).
        balance: oversample the minority class of the training split (FF++: reals).
        synth: ``build_faces_synth`` arguments.
    """

    kind = "faces"

    def __init__(
        self,
        name: str = SYNTH,
        root: str = "data/faces/faces_synth",
        index: str | None = None,
        options: Mapping[str, Any] | None = None,
        image_size: int = 380,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        balance: bool = False,
        seed: int = 0,
        synth: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.name = name
        self.datasets: dict[str, FaceFrameDataset] = {}

    @property
    def test_name(self) -> str:
        return self.name

    @property
    def records(self) -> dict[str, list]:
        """Frame rows per split (``len`` = number of frames)."""
        return {s: d.rows for s, d in self.datasets.items()}

    def _source(self) -> Any:
        hp = self.hparams
        if self.name == SYNTH:
            return build_faces_synth(hp.root, **dict(hp.synth or {}))
        if self.name == "frames":
            return None
        index = Path(hp.index) if hp.index else Path(hp.root) / "index.csv"
        if not index.is_file():
            raise FaceDataError(
                f"{index}: no face index; extract faces first: forgery-faces data_name={self.name} "
                f"root=<videos> out_dir={Path(index).parent}"
            )
        return index

    def prepare_data(self) -> None:
        if self.name == SYNTH:
            build_faces_synth(self.hparams.root, **dict(self.hparams.synth or {}))

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        source = self._source()
        for split in ("train", "val", "test"):
            if source is None:
                vids = index_videos("frames", hp.root, split, **dict(hp.options or {}))
                if vids.missing:
                    log.warning("%s: %d listed videos absent: %s", split, len(vids.missing), vids.missing[:5])
                src = vids.videos
            else:
                src = source
            self.datasets[split] = FaceFrameDataset(
                src, split=split, balance=hp.balance and split == "train", seed=hp.seed, size=hp.image_size
            )
        log.info("face data %s: %s", self.name, {s: d.report for s, d in self.datasets.items()})

    def _loader(self, split: str) -> DataLoader:
        ds = self.datasets[split]
        if len(ds) == 0:
            raise FaceDataError(f"{self.name}: the {split} split has no face crops")
        hp = self.hparams
        bs = hp.batch_size if split == "train" else (hp.eval_batch_size or hp.batch_size)
        return make_loader(self.datasets[split], split, bs, hp.num_workers, hp.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
