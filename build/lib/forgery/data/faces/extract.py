"""Face extraction: videos -> sampled frames -> largest face -> square crops (PNG) + ``index.csv``.

Layout under ``out_dir``: ``<key>/<frame:04d>.png`` per face crop, ``<key>/_done.json`` once a video is
finished (its status, sampled frames and boxes), ``index.csv`` (one row per crop, columns
:data:`INDEX_COLUMNS`, paths relative to ``out_dir``) and ``report.json`` (per ``<dataset>/<split>``: counts,
plus the keys of videos missing / unreadable / with zero frames / without a face / shorter than asked).

A frame's largest face is dropped (counted as ``frames_rejected``) when it is a stray detection: far from
and much smaller than the video's median face (:func:`outlier_faces`), i.e. background picked up on a frame
where the real face was missed.

Every file is written to a temp name and ``os.replace``d, so an interrupted run leaves no half-written PNG,
marker or index; rerunning skips the videos whose marker and crops exist (same settings) and redoes the rest.
Each video is processed by one worker of a ``multiprocessing`` pool (``spawn``), with a rich progress bar.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import track

from forgery.data.faces.detectors import FaceBox, FaceDetector, make_detector
from forgery.data.faces.sources import INDEX_COLUMNS, VideoIndex, VideoRecord, list_frames

__all__ = [
    "DONE_MARKER",
    "INDEX_COLUMNS",
    "SAMPLING",
    "ExtractSettings",
    "VideoUnreadableError",
    "extract_faces",
    "largest_face",
    "outlier_faces",
    "read_frames",
    "sample_indices",
    "square_crop",
]

log = logging.getLogger(__name__)

DONE_MARKER = "_done.json"
# split -> (frames per video, stride, sample only frames < max_frame)
SAMPLING: dict[str, tuple[int, int, int]] = {
    "train": (50, 10, 500),
    "val": (20, 5, 500),
    "test": (20, 5, 500),
}
FAILURES: tuple[str, ...] = ("unreadable", "zero_frames", "no_face")


class VideoUnreadableError(RuntimeError):
    """OpenCV cannot open the video (corrupt, truncated, empty or an unsupported codec)."""


@dataclass(frozen=True)
class ExtractSettings:
    """What decides the crops; ``None`` sampling fields take the split's preset from :data:`SAMPLING`."""

    frames_per_video: int | None = None
    stride: int | None = None
    max_frame: int | None = None
    scale: float = 1.3
    size: int = 380
    detector: str = "mtcnn"
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    detect_max_side: int | None = 720
    reject_outliers: bool = True

    def __post_init__(self) -> None:
        for name in ("frames_per_video", "stride", "max_frame", "detect_max_side"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if self.scale <= 0 or self.size < 1:
            raise ValueError(f"scale and size must be positive, got scale={self.scale}, size={self.size}")

    def sampling(self, split: str) -> tuple[int, int, int]:
        """(frames per video, stride, max frame) for ``split``."""
        preset = SAMPLING.get(split, SAMPLING["test"])
        given = (self.frames_per_video, self.stride, self.max_frame)
        return tuple(p if g is None else g for g, p in zip(given, preset))  # type: ignore[return-value]

    def signature(self, split: str) -> dict[str, Any]:
        """The settings a finished video was made with (a resumed video must match them)."""
        fpv, stride, max_frame = self.sampling(split)
        d = asdict(self)
        d.update(frames_per_video=fpv, stride=stride, max_frame=max_frame)
        d["detector_options"] = dict(self.detector_options)
        return json.loads(json.dumps(d))


def sample_indices(frames_per_video: int, stride: int, max_frame: int) -> list[int]:
    """Frame numbers ``0, stride, 2 * stride, ...`` below ``max_frame``, at most ``frames_per_video``."""
    return list(range(0, max_frame, stride))[:frames_per_video]


def read_frames(path: Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame number, RGB (H, W, 3) uint8)`` for each of ``indices`` the video has.

    ``path`` is a video file (decoded sequentially with ``cv2.VideoCapture``: grabbing is cheap and exact,
    seeking is neither) or a folder of frames (sorted by name). Stops early at the end of the video.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return
    if path.is_dir():
        frames = list_frames(path)
        for i in wanted:
            if i >= len(frames):
                return
            bgr = cv2.imread(str(frames[i]), cv2.IMREAD_COLOR)
            if bgr is not None:
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoUnreadableError(f"{path}: OpenCV cannot open this video")
        want = set(wanted)
        for i in range(wanted[-1] + 1):
            try:
                if not cap.grab():
                    return
                ok, bgr = cap.retrieve() if i in want else (False, None)
            except cv2.error as e:
                raise VideoUnreadableError(f"{path}: decoding failed at frame {i} ({e})") from e
            if ok and bgr is not None:
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def largest_face(
    detector: FaceDetector, rgb: np.ndarray, detect_max_side: int | None = None
) -> FaceBox | None:
    """The largest (by box area) face ``detector`` finds, in ``rgb``'s pixel coordinates, or ``None``.

    With ``detect_max_side`` the detector first sees a copy shrunk to that longest side (faster on HD video)
    and, only if that finds nothing, the full frame (small or tilted faces, e.g. DFDC portrait videos).
    """
    h, w = rgb.shape[:2]
    boxes: list[FaceBox] = []
    if detect_max_side is not None and max(h, w) > detect_max_side:
        f = detect_max_side / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        boxes = [b.scaled(1.0 / f) for b in detector(small)]
    if not boxes:
        boxes = detector(rgb)
    return max(boxes, key=lambda b: b.area) if boxes else None


def square_crop(image: np.ndarray, box: FaceBox, scale: float = 1.3, size: int | None = None) -> np.ndarray:
    """Square crop centred on ``box``, side ``scale * max(w, h)``, zero-padded where it leaves the image.

    ``image`` is (H, W, C); the crop is (S, S, C) with S = the rounded side, or ``size`` when given (area
    interpolation when shrinking, bicubic when enlarging).
    """
    side = max(1, round(scale * max(box.w, box.h)))
    x0 = round(box.x + box.w / 2 - side / 2)
    y0 = round(box.y + box.h / 2 - side / 2)
    h, w = image.shape[:2]
    crop = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    if size is not None and size != side:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop


def outlier_faces(boxes: Sequence[FaceBox], far: float = 1.0, small: float = 0.6) -> list[bool]:
    """Which of one video's face boxes are stray detections rather than the video's face.

    A box is an outlier when it is both far from the median face (centre more than ``far`` median sides away)
    and small (side under ``small`` x the median side): a background false positive picked on a frame where
    the real face was missed. Needs at least 3 boxes; conservative (both conditions) so real head motion or
    a zoom is kept.
    """
    if len(boxes) < 3:
        return [False] * len(boxes)
    cx = np.array([b.x + b.w / 2 for b in boxes])
    cy = np.array([b.y + b.h / 2 for b in boxes])
    side = np.array([max(b.w, b.h) for b in boxes])
    med = float(np.median(side))
    dist = np.hypot(cx - np.median(cx), cy - np.median(cy))
    return ((dist > far * med) & (side < small * med)).tolist()


# ------------------------------------------------------------------------------------------------ io


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    _atomic_write(path, buf.tobytes())


def _clear_video_dir(vdir: Path) -> None:
    """Remove what an earlier (other-settings or interrupted) run left for this video."""
    if not vdir.is_dir():
        return
    for p in vdir.iterdir():
        if p.is_file() and (p.suffix == ".png" or p.name == DONE_MARKER or ".tmp-" in p.name):
            p.unlink()


def _frame_png(key: str, frame: int) -> str:
    """A crop's path relative to ``out_dir`` (as written in index.csv)."""
    return f"{key}/{frame:04d}.png"


# ---------------------------------------------------------------------------------------------- work


_WORKER: dict[str, Any] = {}


def _init_worker(settings: ExtractSettings, threads: int | None) -> None:
    if threads is not None:
        cv2.setNumThreads(threads)
    _WORKER["detector"] = make_detector(settings.detector, **settings.detector_options)
    _WORKER["settings"] = settings


def _resumable(vdir: Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    marker = vdir / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None
    if done.get("settings") != signature:
        return None
    if not all((vdir / f"{f['frame']:04d}.png").is_file() for f in done.get("faces", [])):
        return None
    return done


def process_video(record: VideoRecord, out_dir: Path, overwrite: bool = False) -> dict[str, Any]:
    """Crop the faces of one video (in a worker set up by ``_init_worker``); returns its marker dict."""
    settings: ExtractSettings = _WORKER["settings"]
    detector: FaceDetector = _WORKER["detector"]
    vdir = out_dir / record.key
    signature = settings.signature(record.split)
    if not overwrite and (done := _resumable(vdir, signature)) is not None:
        return {**done, "resumed": True}
    _clear_video_dir(vdir)
    fpv, stride, max_frame = settings.sampling(record.split)
    planned = sample_indices(fpv, stride, max_frame)
    result: dict[str, Any] = {"key": record.key, "frames_planned": len(planned), "settings": signature}
    sampled, found = 0, []
    try:
        for idx, rgb in read_frames(record.path, planned):
            sampled += 1
            try:
                box = largest_face(detector, rgb, settings.detect_max_side)
            except Exception as e:
                raise RuntimeError(f"{record.path}: face detector failed on frame {idx} ({e})") from e
            if box is not None:
                found.append((idx, box, square_crop(rgb, box, settings.scale, settings.size)))
    except VideoUnreadableError as e:
        if sampled == 0:
            # Not marked done: an unreadable file is often a partial download, worth retrying next run.
            return {**result, "status": "unreadable", "error": str(e), "frames_sampled": 0, "faces": []}
        result["error"] = str(e)  # broke off mid-video: keep what was decoded (reported as short)
    stray = outlier_faces([b for _, b, _ in found]) if settings.reject_outliers else [False] * len(found)
    faces, rejected = [], []
    for (idx, box, crop), out in zip(found, stray):
        entry = {"frame": idx, "box": [round(v, 1) for v in (box.x, box.y, box.w, box.h)], "score": box.score}
        if out:
            rejected.append(entry)
            continue
        vdir.mkdir(parents=True, exist_ok=True)
        _write_png(vdir / f"{idx:04d}.png", crop)
        faces.append(entry)
    status = "ok" if faces else ("zero_frames" if sampled == 0 else "no_face")
    result.update(status=status, frames_sampled=sampled, faces=faces, rejected=rejected)
    result["short"] = 0 < sampled < len(planned)
    vdir.mkdir(parents=True, exist_ok=True)
    _write_json(vdir / DONE_MARKER, result)
    return {**result, "resumed": False}


def _run_one(args: tuple[VideoRecord, Path, bool]) -> tuple[VideoRecord, dict[str, Any]]:
    record, out_dir, overwrite = args
    return record, process_video(record, out_dir, overwrite)


# --------------------------------------------------------------------------------------------- index


def _read_index(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != INDEX_COLUMNS:
            raise ValueError(
                f"{path}: not a face index (columns {reader.fieldnames}, expected {INDEX_COLUMNS})"
            )
        return list(reader)


def _write_index(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue().encode())


def _names(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "keys": sorted(items)}


def _build_report(
    results: list[tuple[VideoRecord, dict[str, Any]]],
    missing: list[str],
    skipped: Mapping[str, list[str]],
    settings: ExtractSettings,
) -> dict[str, Any]:
    by_status: dict[str, list[str]] = {s: [] for s in (*FAILURES, "ok")}
    for rec, r in results:
        by_status[r["status"]].append(rec.key)
    sampled = sum(r["frames_sampled"] for _, r in results)
    with_face = sum(len(r["faces"]) for _, r in results)
    per_dataset: dict[str, dict[str, Any]] = {}
    for rec, r in results:
        d = per_dataset.setdefault(rec.dataset, {"videos": 0, "frames_sampled": 0, "frames_with_face": 0})
        d["videos"] += 1
        d["frames_sampled"] += r["frames_sampled"]
        d["frames_with_face"] += len(r["faces"])
    for d in per_dataset.values():
        d["face_rate"] = d["frames_with_face"] / d["frames_sampled"] if d["frames_sampled"] else None
    return {
        "settings": {k: v for k, v in asdict(settings).items() if k != "detector_options"}
        | {"detector_options": dict(settings.detector_options)},
        "videos_listed": len(results) + len(missing),
        "videos_processed": len(results),
        "videos_resumed": sum(bool(r.get("resumed")) for _, r in results),
        "videos_with_faces": len(by_status["ok"]),
        "frames_planned": sum(r["frames_planned"] for _, r in results),
        "frames_sampled": sampled,
        "frames_with_face": with_face,
        "face_rate": with_face / sampled if sampled else None,
        "frames_rejected": sum(len(r.get("rejected", [])) for _, r in results),
        "missing": _names(list(missing)),
        **{s: _names(by_status[s]) for s in FAILURES},
        "short": _names([rec.key for rec, r in results if r.get("short")]),
        "with_rejected": _names([rec.key for rec, r in results if r.get("rejected")]),
        "errors": {rec.key: r["error"] for rec, r in results if "error" in r},
        "skipped": {k: _names(list(v)) for k, v in skipped.items()},
        "per_dataset": per_dataset,
    }


def extract_faces(
    videos: VideoIndex | Sequence[VideoRecord],
    out_dir: str | Path,
    settings: ExtractSettings | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """Extract face crops of ``videos`` into ``out_dir``; returns the report (also merged into report.json).

    ``index.csv`` and ``report.json`` are merged with earlier runs into the same ``out_dir`` (rows of the
    videos processed now replace theirs; a report per ``<dataset>/<split>``), so train and test may share one
    folder; ``name`` labels this run's report (default: ``<dataset>/<split>`` of the records). ``workers``
    <= 1 runs in this process. Don't run two extractions into one folder at once.
    """
    settings = settings or ExtractSettings()
    if isinstance(videos, VideoIndex):
        records, missing, skipped = videos.videos, videos.missing, videos.skipped
    else:
        records, missing, skipped = list(videos), [], {}
    VideoIndex(list(records), [])  # checks the keys are unique
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp-*"):  # index/report temp files of an interrupted run
        stale.unlink()

    tasks = [(rec, out_dir, overwrite) for rec in records]
    results: list[tuple[VideoRecord, dict[str, Any]]] = []
    desc = f"faces -> {out_dir}"
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(settings, None)
        for task in track(tasks, description=desc, disable=not progress):
            results.append(_run_one(task))
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(settings, 1)) as pool:
            it = pool.imap_unordered(_run_one, tasks)
            results.extend(track(it, description=desc, total=len(tasks), disable=not progress))
    order = {rec.key: i for i, rec in enumerate(records)}
    results.sort(key=lambda t: order[t[0].key])

    index_path = out_dir / "index.csv"
    done_keys = {rec.key for rec, _ in results}
    rows: list[dict[str, Any]] = [r for r in _read_index(index_path) if r["key"] not in done_keys]
    for rec, r in results:
        for f in r["faces"]:
            rows.append(
                {
                    "key": rec.key,
                    "frame": f["frame"],
                    "path": _frame_png(rec.key, f["frame"]),
                    "label": rec.label,
                    "dataset": rec.dataset,
                    "method": rec.method,
                    "compression": rec.compression,
                    "split": rec.split,
                }
            )
    rows.sort(key=lambda r: (r["split"], r["key"], int(r["frame"])))
    _write_index(index_path, rows)

    report = _build_report(results, list(missing), skipped, settings)
    report["index_csv"] = str(index_path)
    label = name or "+".join(sorted({f"{r.dataset}/{r.split}" for r in records})) or "unnamed"
    report_path = out_dir / "report.json"
    merged = json.loads(report_path.read_text()) if report_path.is_file() else {}
    merged[label] = report
    _write_json(report_path, merged)
    log.info(
        "%s: %d/%d videos with faces, %d/%d sampled frames with a face; missing %d, unreadable %d, "
        "zero frames %d, no face %d (report: %s)",
        label,
        report["videos_with_faces"],
        report["videos_processed"],
        report["frames_with_face"],
        report["frames_sampled"],
        report["missing"]["count"],
        report["unreadable"]["count"],
        report["zero_frames"]["count"],
        report["no_face"]["count"],
        report_path,
    )
    return report
