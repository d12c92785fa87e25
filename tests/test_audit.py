"""forgery-data audit on tiny fixtures built to leak (and clean twins that report nothing)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from forgery.data.audit import _pack, audit_datamodule, face_identities, hamming, phash
from forgery.data.faces.datamodule import FaceDataModule
from forgery.data.splicing.datamodule import SplicingDataModule


def _photo(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth random colour picture: unrelated seeds are ~32 pHash bits apart (16 at the least of 780
    pairs), a JPEG-60 copy 0-2."""
    noise = np.random.default_rng(seed).standard_normal((h, w, 3))
    x = gaussian_filter(noise, (4, 4, 0))
    return ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _jpeg_copy(arr: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _kinds(report: dict) -> dict[str, int]:
    return {k: n for k, n in report["counts"].items() if n}


# ---------------------------------------------------------------------------------------------- pHash
def test_phash_equals_direct_dct_and_is_robust() -> None:
    arr = _photo(0)
    grey = np.asarray(Image.fromarray(arr).convert("L").resize((32, 32), Image.LANCZOS), dtype=np.float64)
    n = np.arange(32)
    C = 2 * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 64)  # unnormalised DCT-II, as scipy's default
    low = (C @ grey @ C.T)[:8, :8]
    assert np.array_equal(phash(arr), (low > np.median(low)).ravel())
    h = _pack(np.stack([phash(arr), phash(_jpeg_copy(arr, 50)), phash(arr[::2, ::2]), phash(_photo(1))]))
    d = hamming(h[:1], h)[0]
    assert d[0] == 0 and d[1] <= 4 and d[2] <= 4 and d[3] >= 16
    assert hamming(np.array([0], np.uint64), np.array([2**64 - 1], np.uint64))[0, 0] == 64


# ------------------------------------------------------------------------------------------- splicing
def _splicing(tmp: Path, leak: bool) -> tuple[Path, Path]:
    """Train root A (folder layout: 2 tampered + masks, 3 authentic) and test root B (3 authentic)."""
    a, b = tmp / "A", tmp / "B"
    for i in range(2):
        _save(_photo(10 + i), a / "Tp" / f"t{i}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 20:40] = 255
        _save(mask, a / "Gt" / f"t{i}.png")
    for i in range(3):
        _save(_photo(20 + i), a / "Au" / f"a{i}.png")
    if leak:
        _save(_jpeg_copy(_photo(20)), b / "Au" / "recompressed_a0.png")  # a near duplicate of A's a0
        shutil.copy(a / "Au" / "a1.png", b / "Au" / "renamed_a1.png")  # the same photo, another name
        _save(_photo(30), b / "Au" / "b2.png")
    else:
        for i in range(3):
            _save(_photo(30 + i), b / "Au" / f"b{i}.png")
    return a, b


def _splicing_dm(a: Path, b: Path) -> SplicingDataModule:
    return SplicingDataModule(
        name="folder",
        root=str(a),
        image_size=64,
        split={"val_fraction": 0.0, "test_fraction": 0.0, "seed": 0},
        test={"name": "folder", "root": str(b)},
    )


def test_splicing_leaks_found(tmp_path: Path) -> None:
    a, b = _splicing(tmp_path, leak=True)
    report = audit_datamodule(_splicing_dm(a, b))
    assert report["splits"] == {"train": 5, "val": 0, "test": 3} and report["checked_images"] == 8
    assert _kinds(report) == {"same_image": 1, "near_duplicate": 1}
    same, near = report["findings"]
    assert same["kind"] == "same_image" and same["splits"] == ["train", "test"]
    assert same["items"] == ["test:Au/renamed_a1.png", "train:Au/a1.png"]
    assert same["detail"] == "identical bytes, across train, test"
    assert near["items"] == ["train:Au/a0.png", "test:Au/recompressed_a0.png"]
    assert near["distance"] <= 4 and "authentic / authentic" in near["detail"]


def test_splicing_clean_reports_nothing(tmp_path: Path) -> None:
    a, b = _splicing(tmp_path, leak=False)
    report = audit_datamodule(_splicing_dm(a, b))
    assert report["findings"] == [] and report["checked_images"] == 8
    assert all(n == 0 for n in report["counts"].values())


def test_splicing_same_file_and_duplicate_within_split(tmp_path: Path) -> None:
    a, _ = _splicing(tmp_path, leak=False)
    shutil.copy(a / "Au" / "a2.png", a / "Au" / "a2_copy.png")
    # testing on the training folder itself: every file is in both splits
    report = audit_datamodule(_splicing_dm(a, a))
    counts = _kinds(report)
    assert counts["same_file"] == 6  # t0, t1, a0, a1, a2, a2_copy
    dup = [f for f in report["findings"] if f["kind"] == "same_image"]
    assert len(dup) == 1 and dup[0]["splits"] == ["train", "test"]
    assert set(dup[0]["items"]) == {
        f"{s}:Au/{n}" for s in ("train", "test") for n in ("a2.png", "a2_copy.png")
    }
    # near duplicates are only looked for across splits: a copy within one split is a same_image duplicate
    report = audit_datamodule(
        SplicingDataModule(name="folder", root=str(a), image_size=64, split={"val_fraction": 0.0})
    )
    assert _kinds(report) == {"same_image": 1}
    assert report["findings"][0]["detail"] == "identical bytes, within train"


# ---------------------------------------------------------------------------------------------- faces
def _faces(tmp: Path, videos: dict[str, list[str]]) -> Path:
    """A forgery-faces index.csv: ``{split: [key, ...]}``, 2 distinct crops per (split, video)."""
    rows, seed = [], 100
    for split, keys in videos.items():
        for key in keys:
            for frame in (0, 10):
                rel = f"crops/{split}/{key}/{frame:04d}.png"
                _save(_photo(seed, 32, 32), tmp / rel)
                seed += 1
                _, method, comp, _ = key.split("/")
                rows.append(
                    {
                        "key": key,
                        "frame": frame,
                        "path": rel,
                        "label": int(method != "youtube"),
                        "dataset": "ffpp",
                        "method": method,
                        "compression": comp,
                        "split": split,
                    }
                )
    with (tmp / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp


def test_face_identities() -> None:
    assert face_identities("ffpp/youtube/c23/004") == ("ffpp:004",)
    assert face_identities("ffpp/Deepfakes/c23/519_515") == ("ffpp:519", "ffpp:515")
    assert face_identities("celebdf/Celeb-synthesis/na/id12_id5_0003") == ("celebdf:id12", "celebdf:id5")
    assert face_identities("celebdf/Celeb-real/na/id12_0003") == ("celebdf:id12",)
    assert face_identities("celebdf/YouTube-real/na/00012") == ()
    assert face_identities("dfdc/FAKE/na/abc") == ()


def test_faces_identity_and_video_leaks_found(tmp_path: Path) -> None:
    root = _faces(
        tmp_path,
        {
            "train": ["ffpp/youtube/c23/000", "ffpp/Deepfakes/c23/000_001", "ffpp/youtube/c23/002"],
            "val": ["ffpp/youtube/c23/004"],
            "test": ["ffpp/youtube/c23/001", "ffpp/youtube/c23/002"],  # 001 is in 000_001; 002's crops twice
        },
    )
    report = audit_datamodule(FaceDataModule(name="ffpp", root=str(root), image_size=32), threshold=4)
    assert _kinds(report) == {"identity": 2, "video": 1}
    by_kind = {(f["kind"], f.get("key")): f for f in report["findings"]}
    ident = by_kind[("identity", "ffpp:001")]
    assert ident["splits"] == ["train", "test"]
    assert ident["items"] == ["train:ffpp/Deepfakes/c23/000_001", "test:ffpp/youtube/c23/001"]
    assert by_kind[("identity", "ffpp:002")]["splits"] == ["train", "test"]
    video = by_kind[("video", "ffpp/youtube/c23/002")]
    assert video["splits"] == ["train", "test"] and "train: 1 video(s)" in video["detail"]
    assert report["checked_images"] == 12


def test_faces_clean_reports_nothing(tmp_path: Path) -> None:
    root = _faces(
        tmp_path,
        {
            "train": ["ffpp/youtube/c23/000", "ffpp/youtube/c23/001", "ffpp/Deepfakes/c23/000_001"],
            "val": ["ffpp/youtube/c23/004"],
            "test": ["ffpp/youtube/c23/002", "ffpp/FaceSwap/c23/002_003", "ffpp/youtube/c23/003"],
        },
    )
    report = audit_datamodule(FaceDataModule(name="ffpp", root=str(root), image_size=32), threshold=4)
    assert report["findings"] == [] and report["splits"] == {"train": 6, "val": 2, "test": 6}


def test_faces_frames_per_video_subsamples_image_checks(tmp_path: Path) -> None:
    root = _faces(tmp_path, {"train": ["ffpp/youtube/c23/000"], "test": ["ffpp/youtube/c23/001"]})
    dm = FaceDataModule(name="ffpp", root=str(root), image_size=32)
    assert audit_datamodule(dm, frames_per_video=1)["checked_images"] == 2
    assert audit_datamodule(dm, frames_per_video=None)["checked_images"] == 4
    assert audit_datamodule(dm, near_duplicates=False)["checked_images"] == 0


# ------------------------------------------------------------------------------------------ the command
def _run(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    from forgery.cli.data import main

    monkeypatch.setattr(sys, "argv", ["forgery-data", "audit", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().out


def test_cli_exit_codes_table_and_audit_json(tmp_path: Path, monkeypatch, capsys) -> None:
    a, b = _splicing(tmp_path / "leak", leak=True)
    common = ["data=folder", "data.image_size=64", "data.num_workers=0", "data.split.val_fraction=0"]
    run_dir = tmp_path / "run_leak"
    code, out = _run(
        monkeypatch,
        capsys,
        [*common, f"data.root={a}", f"data.test={{name: folder, root: {b}}}", f"hydra.run.dir={run_dir}"],
    )
    assert code == 1
    assert "near_duplicate" in out and "same_image" in out and f"{run_dir / 'audit.json'}" in out
    report = json.loads((run_dir / "audit.json").read_text())
    assert report["dataset"] == "folder" and report["test_dataset"]["name"] == "folder"
    assert report["counts"]["near_duplicate"] == 1 and report["settings"]["threshold"] == 10

    a, b = _splicing(tmp_path / "clean", leak=False)
    run_dir = tmp_path / "run_clean"
    code, out = _run(
        monkeypatch,
        capsys,
        [*common, f"data.root={a}", f"data.test={{name: folder, root: {b}}}", f"hydra.run.dir={run_dir}"],
    )
    assert code == 0 and "no leakage or duplicates found" in out
    assert json.loads((run_dir / "audit.json").read_text())["findings"] == []


def test_threshold_zero_keeps_only_exact_hash_matches_and_bad_settings(tmp_path: Path) -> None:
    a, b = _splicing(tmp_path, leak=True)
    report = audit_datamodule(_splicing_dm(a, b), threshold=0)
    near = [f for f in report["findings"] if f["kind"] == "near_duplicate"]
    assert all(f["distance"] == 0 for f in near)
    with pytest.raises(ValueError, match="frames_per_video"):
        audit_datamodule(_splicing_dm(a, b), frames_per_video=0)
    with pytest.raises(ValueError, match="threshold"):
        audit_datamodule(_splicing_dm(a, b), threshold=-1)
