"""Bad face input: absent, unreadable, zero-frame and faceless videos, corrupt and zero-byte crops.

``data.on_error=raise`` (default) stops with the file and the problem; ``skip`` skips and counts
(``<stage>/skipped``, ``<stage>/missing_videos``) in the logs and in ``metrics.json``. Videos that
``forgery-faces`` cannot crop are counted in its report.json and never reach the face-crop index.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from forgery.cli.eval import evaluate
from forgery.cli.faces import run as faces_run
from forgery.data.base import collate_skipping
from forgery.data.check import check_datamodule
from forgery.data.faces import FaceDataError
from forgery.data.faces.datamodule import FaceDataModule
from forgery.data.faces.dataset import FaceFrameDataset
from forgery.data.faces.detectors import FaceBox, register_detector
from forgery.modules.faces import FaceForgeryModule
from tests.test_faces_data import _compose, _touch, _write_index, _write_video
from tests.test_faces_real import faces_ckpt  # noqa: F401  (fixture)

REASONS = ("missing", "unreadable", "zero_frames", "no_face")


class _BrightSquare:
    """Test detector: the box around the pixels brighter than 200 (the "face"); none on a dull frame."""

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        ys, xs = np.nonzero(rgb.min(axis=2) > 200)
        if len(xs) < 16:
            return []
        x0, y0, x1, y1 = (float(v) for v in (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        return [FaceBox(x0, y0, x1 - x0, y1 - y0)]


def _square_frames(n: int) -> list[np.ndarray]:
    frames = []
    for t in range(n):
        f = np.full((64, 64, 3), 60, np.uint8)
        f[16 + t : 40 + t, 20:44] = 255
        frames.append(f)
    return frames


GOOD = {  # key -> (split, label), all made from one good video file
    "toy/real/na/tr_real": ("train", 0),
    "toy/fake/na/tr_fake": ("train", 1),
    "toy/real/na/va_real": ("val", 0),
    "toy/fake/na/va_fake": ("val", 1),
    "toy/real/na/te_real": ("test", 0),
    "toy/fake/na/te_fake": ("test", 1),
}
BAD = {  # key -> (file, label, reason), all in the test split
    "toy/real/na/zero": ("zero.avi", 0, "zero_frames"),
    "toy/fake/na/garbage": ("garbage.mp4", 1, "unreadable"),
    "toy/real/na/blank": ("blank.avi", 0, "no_face"),
    "toy/fake/na/gone": ("gone.avi", 1, "missing"),
}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """forgery-faces split=all on a manifest listing good, zero-frame, unreadable, faceless, absent videos."""
    root = tmp_path_factory.mktemp("videos")
    _write_video(root / "good.avi", _square_frames(6))
    _write_video(root / "zero.avi", [])
    _write_video(root / "blank.avi", [np.full((64, 64, 3), 60, np.uint8)] * 6)
    _touch(root / "garbage.mp4", np.random.default_rng(0).bytes(4096))  # random bytes named .mp4
    lines = ["path,label,split,key"]
    lines += [f"good.avi,{label},{split},{key}" for key, (split, label) in GOOD.items()]
    lines += [f"{name},{label},test,{key}" for key, (name, label, _) in BAD.items()]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    register_detector("bright_square", _BrightSquare)
    out = root / "crops"
    cfg = _compose(
        [
            "data_name=frames",
            f"root={root}",
            "split=all",
            "source={manifest: manifest.csv}",
            f"out_dir={out}",
            "frames_per_video=3",
            "stride=2",
            "size=16",
            "detector=bright_square",
            "detect_max_side=null",
            "workers=1",
            "progress=false",
        ]
    )
    faces_run(cfg)
    return out


def test_extraction_counts_each_bad_video_and_indexes_only_good_crops(extracted: Path) -> None:
    reports = json.loads((extracted / "report.json").read_text())
    assert sorted(reports) == ["frames/test", "frames/train", "frames/val"]
    test = reports["frames/test"]
    for key, (_, _, reason) in BAD.items():
        assert test[reason] == {"count": 1, "keys": [key]}, reason
    assert "OpenCV cannot open this video" in test["errors"]["toy/fake/na/garbage"]
    assert test["videos_listed"] == 6 and test["videos_processed"] == 5 and test["videos_with_faces"] == 2
    for split in ("train", "val"):
        assert all(reports[f"frames/{split}"][r]["count"] == 0 for r in REASONS)

    rows = list(csv.DictReader((extracted / "index.csv").open()))
    assert sorted({r["key"] for r in rows}) == sorted(GOOD)
    assert all(r["frame"] in ("0", "2", "4") for r in rows) and len(rows) == 3 * len(GOOD)
    ds = FaceFrameDataset(extracted / "index.csv", split="test")
    assert ds.video_keys == ["toy/fake/na/te_fake", "toy/real/na/te_real"] and len(ds) == 6

    # the datamodule (default on_error=raise) loads only those, and knows what extraction dropped
    dm = FaceDataModule(name="toy", root=str(extracted), image_size=16, batch_size=2, eval_batch_size=8)
    dm.setup("fit")
    assert {s: d.video_keys for s, d in dm.datasets.items()} == {
        s: sorted(k for k, (sp, _) in GOOD.items() if sp == s) for s in ("train", "val", "test")
    }
    assert dm.dropped_videos["test"] == {reason: [key] for key, (_, _, reason) in BAD.items()}
    assert dm.dropped_videos["train"] == dm.dropped_videos["val"] == {r: [] for r in REASONS}
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (6, 3, 16, 16) and batch["n_skipped"].item() == 0


class _TinyNet(nn.Module):
    """Stands in for MAT: mean colour -> 2 logits, no attention maps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.fc(x.mean((2, 3))), attention_maps=None)


class _CE(nn.Module):
    def forward(self, out: SimpleNamespace, labels: torch.Tensor, *args: object, **kw: object) -> dict:
        return {"loss": F.cross_entropy(out.logits, labels)}


def _corrupt(crops: Path, rel: str, data: bytes = b"not a PNG at all") -> Path:
    path = crops / rel
    path.write_bytes(data)
    return path


def test_module_trains_and_counts_skipped_crops_and_dropped_videos(extracted: Path, tmp_path: Path) -> None:
    crops = Path(shutil.copytree(extracted, tmp_path / "crops"))
    _corrupt(crops, "toy/real/na/tr_real/0002.png")
    _corrupt(crops, "toy/fake/na/va_fake/0004.png", b"")
    # the first test batch (te_fake frames 0, 2) is all bad: skipped whole
    _corrupt(crops, "toy/fake/na/te_fake/0000.png")
    _corrupt(crops, "toy/fake/na/te_fake/0002.png", b"")
    dm = FaceDataModule(
        name="toy", root=str(crops), image_size=16, batch_size=2, eval_batch_size=2, on_error="skip"
    )
    module = FaceForgeryModule(_TinyNet(), _CE(), partial(torch.optim.SGD, lr=0.1))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    fit = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert trainer.global_step == 3  # 6 train crops, batch 2: the batch holding the bad crop still trains
    assert fit["train/skipped"] == 1 and fit["val/skipped"] == 1
    assert fit["train/missing_videos"] == 0 and fit["val/no_face_videos"] == 0
    (test,) = trainer.test(module, datamodule=dm)
    assert test["test/skipped"] == 2
    assert test["test/n_frames"] == 4 and test["test/n_videos"] == 2  # te_fake 4, te_real 0, 2, 4
    for reason in REASONS:
        assert test[f"test/{reason}_videos"] == 1, reason


def test_eval_metrics_json_counts_skips_raise_names_the_crop(
    make_cfg,
    faces_ckpt: Path,  # noqa: F811
    extracted: Path,
    tmp_path: Path,
) -> None:
    crops = Path(shutil.copytree(extracted, tmp_path / "crops"))
    bad = _corrupt(crops, "toy/real/na/te_real/0002.png")
    args = [f"ckpt_path={faces_ckpt}", "data=ffpp", f"data.root={crops}", "data.num_workers=0"]
    args += ["data.image_size=64", "data.eval_batch_size=4", "data.balance=false"]
    with pytest.raises(
        FaceDataError, match=re.escape(f"{bad}: cannot read face crop of toy/real/na/te_real")
    ):
        evaluate(make_cfg("eval", args))
    cfg = make_cfg("eval", [*args, "data.on_error=skip"])
    evaluate(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    assert saved["test/skipped"] == 1 and saved["test/n_frames"] == 5 and saved["test/n_videos"] == 2
    assert {r: saved[f"test/{r}_videos"] for r in REASONS} == dict.fromkeys(REASONS, 1)


def _frames_with_manifest(root: Path) -> Path:
    """Crop folders of 2 videos per split, and a manifest that also lists 3 absent ones."""
    lines = ["path,label,split"]
    for split in ("train", "val", "test"):
        for label, word in ((0, "real"), (1, "fake")):
            folder = root / split / word / "v"
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i:04d}.png")
            lines.append(f"{split}/{word}/v,{label},{split}")
    lines += ["train/fake/gone1,1,train", "test/real/gone2,0,test", "test/fake/gone3,1,test"]
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    return root / "m.csv"


def test_frames_manifest_naming_absent_videos_raises_or_skips(tmp_path: Path) -> None:
    manifest = _frames_with_manifest(tmp_path)
    kw = {"name": "frames", "root": str(tmp_path), "options": {"manifest": "m.csv"}, "image_size": 8}
    with pytest.raises(FaceDataError) as err:
        FaceDataModule(**kw).setup("fit")
    msg = str(err.value)
    assert msg.startswith(f"{manifest}: lists 3 video(s) absent on disk (train: 1, test: 2)")
    for key in ("frames/fake/na/train/fake/gone1", "frames/real/na/test/real/gone2"):
        assert key in msg
    assert "data.on_error=skip proceeds without them" in msg

    dm = FaceDataModule(**kw, on_error="skip")
    dm.setup("fit")
    assert dm.dropped_videos["train"]["missing"] == ["frames/fake/na/train/fake/gone1"]
    assert dm.dropped_videos["test"]["missing"] == [
        "frames/real/na/test/real/gone2",
        "frames/fake/na/test/fake/gone3",
    ]
    assert dm.dropped_videos["val"]["missing"] == []
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 4, "val": 4, "test": 4}
    with pytest.raises(ValueError, match="on_error must be raise or skip, got 'ignore'"):
        FaceDataModule(**kw, on_error="ignore")


def test_corrupt_and_zero_byte_crops_raise_or_skip(tmp_path: Path) -> None:
    rows = [("d/r/na/a", i, 0, "test") for i in range(3)] + [("d/f/na/b", i, 1, "test") for i in range(3)]
    index = _write_index(tmp_path, rows)
    bad = _corrupt(tmp_path, "d/r/na/a/0001.png")
    data = (tmp_path / "d/f/na/b/0002.png").read_bytes()
    truncated = _corrupt(tmp_path, "d/f/na/b/0002.png", data[: len(data) // 2])
    empty = _corrupt(tmp_path, "d/r/na/a/0002.png", b"")

    ds = FaceFrameDataset(index, split="test")
    errors = {}
    for i in range(len(ds)):
        try:
            ds[i]
        except FaceDataError as e:
            errors[i] = str(e)
    assert sorted(errors) == [1, 2, 5]
    assert errors[1].startswith(f"{bad}: cannot read face crop of d/r/na/a (UnidentifiedImageError")
    assert errors[2] == f"{empty}: cannot read face crop of d/r/na/a (zero-byte file)"
    assert errors[5].startswith(f"{truncated}: cannot read face crop of d/f/na/b (")

    skip = FaceFrameDataset(index, split="test", on_error="skip")
    assert skip[1] is None and skip[2] is None and skip[5] is None
    batch = next(iter(DataLoader(skip, batch_size=6, collate_fn=collate_skipping)))
    assert batch["image"].shape == (3, 3, 4, 4) and batch["n_skipped"].item() == 3
    assert batch["key"] == ["d/r/na/a", "d/f/na/b", "d/f/na/b"]  # not replaced by other samples
    assert [v.item() for v in batch["image"][:, 0, 0, 0] * 255] == pytest.approx([0, 0, 1])
    with pytest.raises(ValueError, match="on_error must be raise or skip"):
        FaceFrameDataset(index, on_error="warn")

    # forgery-data check lists every problem whatever on_error says
    dm = FaceDataModule(name="toy", root=str(tmp_path), image_size=4, on_error="skip")
    report = check_datamodule(dm)
    assert sorted(Path(p["file"]).name for p in report["problems"]) == ["0001.png", "0002.png", "0002.png"]
