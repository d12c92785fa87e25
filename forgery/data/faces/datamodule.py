"""LightningDataModule for face-forgery detection (face crops -> frame and video scores)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgery.data.base import ForgeryDataModule
from forgery.data.faces.dataset import FaceFrameDataset
from forgery.data.faces.sources import SPLITS, FaceDataError, index_videos
from forgery.data.faces.synth import build_faces_synth

__all__ = ["FaceDataModule"]

log = logging.getLogger(__name__)

SYNTH = "faces_synth"
# why a listed video has no crops: the reasons forgery-faces records in report.json, in log/metric order
DROP_REASONS: tuple[str, ...] = ("missing", "unreadable", "zero_frames", "no_face")


class FaceDataModule(ForgeryDataModule):
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
        on_error: what to do with bad input, checked lazily as training and evaluation meet it.
            ``raise`` (default) stops at an unreadable face crop, and at setup when a ``frames`` manifest
            lists videos that are absent, naming the file and the problem; ``skip`` skips such crops (counted
            as ``<stage>/skipped``) and videos (``<stage>/missing_videos``). Videos that ``forgery-faces``
            dropped at extraction (listed but absent, unreadable, zero frames, no face) are already reported
            in its ``report.json``; they never stop training (a partial download extracts and trains as is)
            and are counted per split in :attr:`dropped_videos` and as ``<stage>/<reason>_videos``.
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
        on_error: str = "raise",
    ) -> None:
        super().__init__(name, on_error)
        self.save_hyperparameters(logger=False)
        # split -> reason (DROP_REASONS) -> keys of the listed videos without crops
        self.dropped_videos: dict[str, dict[str, list[str]]] = {}

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
        if source is None:
            per_split = {s: index_videos("frames", hp.root, s, **dict(hp.options or {})) for s in SPLITS}
            dropped = {s: {"missing": list(v.missing)} for s, v in per_split.items()}
            self._check_missing(dropped)
            sources: dict[str, Any] = {s: v.videos for s, v in per_split.items()}
        else:
            dropped = _extraction_drops(Path(source).parent / "report.json")
            sources = dict.fromkeys(SPLITS, source)
        for split in SPLITS:
            self.datasets[split] = FaceFrameDataset(
                sources[split],
                split=split,
                balance=hp.balance and split == "train",
                seed=hp.seed,
                size=hp.image_size,
                on_error=hp.on_error,
            )
        for split in SPLITS:
            # a key re-extracted later (e.g. after completing a download) has crops now: not dropped
            have = set(self.datasets[split].video_keys)
            got = dropped.get(split, {})
            self.dropped_videos[split] = {
                r: [k for k in got.get(r, []) if k not in have] for r in DROP_REASONS
            }
        counts = {s: {r: len(k) for r, k in d.items() if k} for s, d in self.dropped_videos.items()}
        if any(counts.values()):
            log.warning(
                "face data %s: listed videos without crops, by split and reason: %s", self.name, counts
            )
        log.info(
            "face data %s in %s: %s", self.name, hp.root, {s: d.report for s, d in self.datasets.items()}
        )

    def _check_missing(self, dropped: Mapping[str, Mapping[str, list[str]]]) -> None:
        """``on_error=raise``: listed-but-absent videos stop setup, naming the list and the first keys."""
        missing = {s: d["missing"] for s, d in dropped.items() if d.get("missing")}
        if not missing or self.hparams.on_error == "skip":
            return
        options = dict(self.hparams.options or {})
        where = Path(self.hparams.root)
        if options.get("manifest"):
            m = Path(options["manifest"])
            where = m if m.is_absolute() else where / m
        keys = [k for s in SPLITS for k in missing.get(s, [])]
        raise FaceDataError(
            f"{where}: lists {len(keys)} video(s) absent on disk "
            f"({', '.join(f'{s}: {len(k)}' for s, k in missing.items())}): {keys[:5]}"
            f"{' ...' if len(keys) > 5 else ''}; data.on_error=skip proceeds without them (counted as "
            "<stage>/missing_videos)"
        )

    def empty_split_error(self, split: str) -> Exception:
        return FaceDataError(f"{self.name}: the {split} split has no face crops")


def _extraction_drops(report_path: Path) -> dict[str, dict[str, list[str]]]:
    """split -> reason -> keys of the videos ``forgery-faces`` listed but wrote no crops for, from its
    ``report.json`` (absent or unreadable report: nothing known, nothing dropped)."""
    if not report_path.is_file():
        return {}
    try:
        reports = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: cannot read the extraction report (%s); dropped videos not counted", report_path, e)
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    for label, report in reports.items() if isinstance(reports, dict) else ():
        # labels are "<dataset>/<split>" (forgery-faces), or several joined by "+" (extract_faces)
        splits = {part.rpartition("/")[2] for part in label.split("+")}
        if len(splits) != 1 or not splits <= set(SPLITS) or not isinstance(report, dict):
            continue
        bucket = out.setdefault(splits.pop(), {})
        for reason in DROP_REASONS:
            keys = (report.get(reason) or {}).get("keys", [])
            bucket[reason] = sorted(set(bucket.get(reason, [])) | set(keys))
    return out
