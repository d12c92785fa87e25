"""Face extraction: videos -> sampled frames -> largest face -> square crops (PNG) + ``index.csv``.

Layout under ``out_dir``: ``<key>/<frame:04d>.png`` per face crop, ``<key>/_done.json`` once a video is
finished (its status, sampled frames and boxes, which detection pass found each), ``index.csv`` (one row
per crop, columns :data:`INDEX_COLUMNS`, paths relative to ``out_dir``) and ``report.json`` (per
``<dataset>/<split>``: counts, plus the keys of videos missing / unreadable / with zero frames / without a
face / shorter than asked).

Only the sampled frames are decoded (PyAV, skipping the unreferenced frames in between; :func:`read_frames`).
A frame's face is looked for in up to four passes (:data:`PASSES`, counted in the report as ``found_by``):
on the frame shrunk to ``detect_max_side``, on that copy contrast-normalised (CLAHE; dark scenes), then at
full resolution (small faces in wide shots), plain and normalised. Crops are always cut from the frame itself.
With ``track=True`` (opt-in) a frame is first searched only near the last face followed (counted as
``tracked``; :func:`track_face`): detection is 1.2-3x faster and follows one person through the video, but a
new, larger face elsewhere is only taken on the next whole-frame search (every 5th sampled frame, and
whenever nothing is found near the last face).
A frame's largest face is dropped (counted as ``frames_rejected``) when it is a stray detection: far from
and much smaller than the video's median face (:func:`outlier_faces`), i.e. background picked up on a frame
where the real face was missed.

Every file is written to a temp name and ``os.replace``d, so an interrupted run leaves no half-written PNG,
marker or index; rerunning skips the videos whose marker and crops exist (same settings) and redoes the rest.
Each video is processed by one worker of a ``multiprocessing`` pool (``spawn``), with a rich progress bar.

Sharding (``shard=i, num_shards=n``) splits a dataset's videos by a stable hash of their keys
(:func:`shard_of`); shards may run at once (on one machine or a cluster) into one ``out_dir``: each writes
its videos and one part file under ``_shards/``, never the shared ``index.csv`` / ``report.json``, which
:func:`merge_shards` builds afterwards (the same files an unsharded run writes).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import logging
import multiprocessing as mp
import re
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import track

from forgery.data.faces.detectors import FaceBox, FaceDetector, make_detector, shrink
from forgery.data.faces.sources import INDEX_COLUMNS, FaceDataError, VideoIndex, VideoRecord, list_frames
from forgery.errors import ConfigError
from forgery.utils.io import atomic_path, atomic_write_bytes

__all__ = [
    "DONE_MARKER",
    "FOUND_BY",
    "INDEX_COLUMNS",
    "PASSES",
    "SAMPLING",
    "ExtractSettings",
    "VideoUnreadableError",
    "extract_faces",
    "encode_png",
    "extraction_throughput",
    "find_faces",
    "largest_face",
    "merge_shards",
    "normalise_contrast",
    "outlier_faces",
    "read_frames",
    "sample_indices",
    "scaled_video_copy",
    "shard_of",
    "square_crop",
    "track_face",
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
# Detection passes, in the order they are tried on a frame still without a face (see the module docstring).
PASSES: tuple[str, ...] = ("detect", "contrast", "full_res", "contrast_full_res")
# What found a face, as counted in the report: near the previous face (track=True), else one of the passes.
FOUND_BY: tuple[str, ...] = ("tracked", *PASSES)
# track=True: the square searched is this many times the previous face's longer side; a face found there is
# taken when its longer side is within this range of the previous one's (else the whole frame is searched)
TRACK_REGION, TRACK_SIZE_RANGE = 2.5, (0.6, 1.6)
TRACK_REFRESH = 5  # ... and the whole frame is searched on every this-many-th sampled frame
# Bumped when the same settings give other crops (v2: the vectorised MTCNN, contrast retries; v3: 4:4:4 frames
# converted by OpenCV, within one grey level of v2), so a resumed run redoes videos finished by an older
# extractor instead of mixing crops of both.
EXTRACTOR_VERSION = 3
SHARDS_DIR = "_shards"


class VideoUnreadableError(RuntimeError):
    """Neither PyAV nor OpenCV can open the video, or decoding it broke off (corrupt, truncated, codec)."""


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
    contrast_retry: bool = True
    track: bool = False  # search near the previous sampled frame's face first (see the module docstring)
    batch_size: int = 8  # frames decoded, then detected, at a time (a batch for detectors that take one)

    def __post_init__(self) -> None:
        if not isinstance(self.track, bool):
            raise ConfigError(f"track must be true or false, got {self.track!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {self.batch_size!r}")
        for name in ("frames_per_video", "stride", "max_frame", "detect_max_side"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {v!r}")
        if self.scale <= 0 or self.size < 1:
            raise ConfigError(f"scale and size must be positive, got scale={self.scale}, size={self.size}")

    def sampling(self, split: str) -> tuple[int, int, int]:
        """(frames per video, stride, max frame) for ``split``."""
        preset = SAMPLING.get(split, SAMPLING["test"])
        given = (self.frames_per_video, self.stride, self.max_frame)
        return tuple(p if g is None else g for g, p in zip(given, preset))  # type: ignore[return-value]

    def signature(self, split: str) -> dict[str, Any]:
        """The settings a finished video was made with (a resumed video must match them)."""
        fpv, stride, max_frame = self.sampling(split)
        d = asdict(self)
        d.update(frames_per_video=fpv, stride=stride, max_frame=max_frame, version=EXTRACTOR_VERSION)
        d["detector_options"] = dict(self.detector_options)
        del d["batch_size"]  # how frames are grouped does not change the crops
        return json.loads(json.dumps(d))


def sample_indices(frames_per_video: int, stride: int, max_frame: int) -> list[int]:
    """Frame numbers ``0, stride, 2 * stride, ...`` below ``max_frame``, at most ``frames_per_video``."""
    return list(range(0, max_frame, stride))[:frames_per_video]


class _NotSelectableError(Exception):
    """The stream cannot be decoded selectively (no timestamps, or decode order far from display order)."""


# Packets whose display position is decided this many packets after they are read: a B-frame stream shows
# a packet within a few packets of decoding it (x264 <= 16), so its rank among the timestamps is final.
_REORDER_WINDOW = 32


# BT.601 limited range (what swscale assumes for untagged video, as OpenCV's decoder does) as a 3 x 4 affine
# map of (Y, U, V) to (R, G, B)
_BT601 = np.array([[1.164383, 0.0, 1.596027], [1.164383, -0.391762, -0.812968], [1.164383, 2.017232, 0.0]])
_BT601_AFFINE = np.hstack([_BT601, -(_BT601 @ [16.0, 128.0, 128.0])[:, None]]).astype(np.float32)
# frame.colorspace values read as BT.601 (unspecified, BT470BG, SMPTE170M); color_range values read as
# limited (unspecified, MPEG)
_BT601_SPACES, _LIMITED_RANGES = (2, 5, 6), (0, 1)


def _yuv444_rgb(frame: Any) -> np.ndarray:
    """A yuv444p frame as RGB by OpenCV's 8-bit affine transform of its planes (no copy until the merge)."""
    h, w = frame.height, frame.width
    y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w] for p in frame.planes)
    return cv2.transform(cv2.merge([y, u, v]), _BT601_AFFINE)


def _rgb(frame: Any) -> np.ndarray:
    """A PyAV frame as RGB (H, W, 3) uint8 in BT.601 limited range, as FFmpeg's swscale (and OpenCV) convert.

    4:2:0 frames take swscale's fast path, which gives the same bytes ~3x faster. Untagged 4:4:4 frames
    (FF++ c23) take OpenCV's fixed-point transform of the planes: ~7x faster than swscale's default path at
    1080p, within 1 grey level of it (on ~5% of pixels; tested). Everything else takes swscale's default path.
    """
    name = frame.format.name
    if name == "yuv420p":
        return frame.reformat(format="rgb24", interpolation="FAST_BILINEAR").to_ndarray()
    if (
        name == "yuv444p"
        and getattr(frame, "colorspace", None) in _BT601_SPACES
        and getattr(frame, "color_range", None) in _LIMITED_RANGES
    ):
        return _yuv444_rgb(frame)
    return frame.to_ndarray(format="rgb24")


def _av_frames(container: Any, wanted: list[int], threads: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """PyAV decoding of the frames ``wanted`` (sorted), skipping the non-reference frames nobody wants.

    A frame's number is its rank in display order (as OpenCV counts it), found from the packets'
    timestamps. Frames that are neither wanted nor referenced by others (most B-frames) are not decoded
    (``skip_frame=NONREF``, switched per packet); the wanted ones are bit-identical to a full decode.
    Raises :class:`_NotSelectableError` when timestamps cannot be trusted (frames yielded so far are right).
    """
    want = set(wanted)
    with container:
        if not container.streams.video:
            raise VideoUnreadableError(f"{container.name}: no video stream")
        stream = container.streams.video[0]
        cc = stream.codec_context
        if threads == 1:
            cc.thread_type = "NONE"
        else:
            cc.thread_type = "AUTO"
            cc.thread_count = threads or 0
        seen: list[int] = []  # sorted display timestamps of the packets read so far
        pending: deque[Any] = deque()
        decided_pts = -(2**63)  # the largest timestamp whose rank is final
        done = 0

        def decode(packet: Any) -> Iterator[tuple[int, np.ndarray]]:
            nonlocal decided_pts
            if packet is not None:
                rank = bisect.bisect_left(seen, packet.pts)
                decided_pts = max(decided_pts, packet.pts)
                cc.skip_frame = "DEFAULT" if rank in want else "NONREF"
            for frame in cc.decode(packet):
                if frame.pts is None:
                    raise _NotSelectableError("a decoded frame has no timestamp")
                i = bisect.bisect_left(seen, frame.pts)
                if i == len(seen) or seen[i] != frame.pts:
                    raise _NotSelectableError("a decoded frame's timestamp is no packet's")
                if i in want:
                    yield i, _rgb(frame)

        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                raise _NotSelectableError("a packet has no timestamp")
            if getattr(packet, "is_discard", False):  # before the edit list's start: never displayed
                continue
            at = bisect.bisect_left(seen, packet.pts)
            if packet.pts <= decided_pts or (at < len(seen) and seen[at] == packet.pts):
                raise _NotSelectableError("timestamps repeat or decode order is far from display order")
            seen.insert(at, packet.pts)
            pending.append(packet)
            if len(pending) > _REORDER_WINDOW:
                head = pending.popleft()
                for item in decode(head):
                    done += 1
                    yield item
                if done == len(want) or bisect.bisect_left(seen, head.pts) > wanted[-1] + _REORDER_WINDOW:
                    break
        while pending and done < len(want):
            for item in decode(pending.popleft()):
                done += 1
                yield item
        if done < len(want):
            for item in decode(None):  # flush the frames the decoder still holds
                done += 1
                yield item


def _av_sequential(path: Path, wanted: list[int], threads: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """PyAV decoding of every frame in order (numbered by output order) up to the last one wanted."""
    import av

    want = set(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE" if threads == 1 else "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                yield i, _rgb(frame)
            if i >= wanted[-1]:
                return


def _cv2_frames(path: Path, wanted: list[int], why: str) -> Iterator[tuple[int, np.ndarray]]:
    """OpenCV decoding (grab every frame, retrieve the wanted ones): for what PyAV cannot open."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoUnreadableError(
                f"{path}: PyAV cannot open this video ({why}); OpenCV cannot open this video"
            )
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


def read_frames(
    path: Path, indices: Sequence[int], threads: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame number, RGB (H, W, 3) uint8)`` for each of ``indices`` the video has, in order.

    ``path`` is a video file or a folder of frames (sorted by name). Videos are decoded with PyAV, only as
    far as the last index and without the unreferenced frames in between (see :func:`_av_frames`; seeking
    would not help: FF++ / DFDC videos have one keyframe per 250 frames); ``threads`` is the decoder's
    thread count (``None``: FFmpeg's choice, 1 in extraction workers). Files PyAV cannot open go to
    OpenCV. Stops early at the end of the video; raises :class:`VideoUnreadableError` when nothing can open
    the file or decoding breaks off.
    """
    import av

    wanted = sorted(set(indices))
    if not wanted:
        return
    path = Path(path)
    if path.is_dir():
        frames = list_frames(path)
        for i in wanted:
            if i >= len(frames):
                return
            bgr = cv2.imread(str(frames[i]), cv2.IMREAD_COLOR)
            if bgr is not None:
                yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    try:
        container = av.open(str(path))
    except Exception as e:  # not a container FFmpeg knows (or not a file at all)
        yield from _cv2_frames(path, wanted, str(e))
        return
    last = -1
    try:
        try:
            for i, rgb in _av_frames(container, wanted, threads):
                last = i
                yield i, rgb
        except _NotSelectableError as e:
            log.debug("%s: decoding every frame (%s)", path, e)
            rest = [i for i in wanted if i > last]
            for i, rgb in _av_sequential(path, rest, threads) if rest else ():
                last = i
                yield i, rgb
    except av.error.FFmpegError as e:
        raise VideoUnreadableError(f"{path}: decoding failed after frame {last} ({e})") from e


def normalise_contrast(rgb: np.ndarray, clip: float = 4.0, tiles: int = 8) -> np.ndarray:
    """``rgb`` with CLAHE on its CIELAB lightness (``tiles`` x ``tiles`` regions, clip limit ``clip``).

    For detection only: it lifts faces out of dark or flat scenes (a DFDC-style video at mean luminance ~35)
    while keeping colours; crops are cut from the original frame.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _largest(detector: FaceDetector, rgb: np.ndarray) -> FaceBox | None:
    """The detector's largest face; detectors with a ``largest`` method (MTCNN) may stop early."""
    if hasattr(detector, "largest"):
        return detector.largest(rgb)
    boxes = detector(rgb)
    return max(boxes, key=lambda b: b.area) if boxes else None


def _largest_many(
    detector: FaceDetector, images: list[np.ndarray], factors: list[float]
) -> list[FaceBox | None]:
    """The largest face of each image as the detector finds it in the image shrunk by its factor.

    Boxes are in the given images' pixels. A detector with ``largest_batch(images)`` (e.g. on a GPU) gets
    the shrunk copies in one call; one with ``largest(rgb, shrink=f)`` (MTCNN, whose image pyramid makes
    shrinking the same as a larger minimum face) gets the images themselves, saving a full-frame resize.
    """
    if hasattr(detector, "largest_batch"):
        small = [_shrunk(im, f) for im, f in zip(images, factors)]
        return [
            None if b is None else b if f == 1 else b.scaled(1.0 / f)
            for b, f in zip(detector.largest_batch(small), factors)
        ]
    if getattr(detector, "detects_shrunk", False):
        return [detector.largest(im, shrink=f) for im, f in zip(images, factors)]
    out = []
    for im, f in zip(images, factors):
        box = _largest(detector, _shrunk(im, f))
        out.append(box if box is None or f == 1 else box.scaled(1.0 / f))
    return out


def _shrink_factor(shape: tuple[int, ...], detect_max_side: int | None) -> float:
    h, w = shape[:2]
    return detect_max_side / max(h, w) if detect_max_side is not None and max(h, w) > detect_max_side else 1.0


def _shrunk(rgb: np.ndarray, f: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return shrink(rgb, max(1, round(w * f)), max(1, round(h * f))) if f < 1 else rgb


def largest_face(
    detector: FaceDetector, rgb: np.ndarray, detect_max_side: int | None = None
) -> FaceBox | None:
    """The largest (by box area) face ``detector`` finds, in ``rgb``'s pixel coordinates, or ``None``.

    With ``detect_max_side`` the detector first sees a copy shrunk to that longest side (faster on HD video)
    and, only if that finds nothing, the full frame (small or tilted faces, e.g. DFDC portrait videos).
    """
    f = _shrink_factor(rgb.shape, detect_max_side)
    if f < 1 and (box := _largest_many(detector, [rgb], [f])[0]) is not None:
        return box
    return _largest(detector, rgb)


def find_faces(
    detector: FaceDetector, frames: Sequence[np.ndarray], settings: ExtractSettings
) -> list[tuple[FaceBox | None, str | None]]:
    """Each frame's largest face (in its pixels) and the pass of :data:`PASSES` that found it.

    Every pass runs on the frames the earlier ones left without a face, as one batch: the frame shrunk to
    ``settings.detect_max_side`` (``detect``), the same contrast-normalised (``contrast``, when
    ``settings.contrast_retry``), then the full frame (``full_res``) and its normalised copy
    (``contrast_full_res``); the full-resolution passes only for frames that were shrunk.
    """
    factors = [_shrink_factor(fr.shape, settings.detect_max_side) for fr in frames]
    normalised: dict[int, np.ndarray] = {}
    out: list[tuple[FaceBox | None, str | None]] = [(None, None)] * len(frames)
    for name in PASSES:
        contrast, full = name.startswith("contrast"), name.endswith("full_res")
        if contrast and not settings.contrast_retry:
            continue
        todo = [i for i, (box, _) in enumerate(out) if box is None and (not full or factors[i] < 1)]
        if not todo:
            continue
        if contrast:
            for i in todo:
                if i not in normalised:
                    normalised[i] = normalise_contrast(frames[i])
        images = [normalised[i] if contrast else frames[i] for i in todo]
        boxes = _largest_many(detector, images, [1.0 if full else factors[i] for i in todo])
        for i, box in zip(todo, boxes):
            if box is not None:
                out[i] = (box, name)
    return out


def track_face(
    detector: FaceDetector, rgb: np.ndarray, previous: FaceBox, settings: ExtractSettings
) -> FaceBox | None:
    """The face near ``previous`` (the last sampled frame's face) in ``rgb``, in ``rgb``'s pixels, or None.

    Searches the square of side :data:`TRACK_REGION` x the previous box's longer side about its centre
    (clipped to the frame), shrunk as the whole frame would be (the same smallest face), and keeps the
    largest face there when its longer side is within :data:`TRACK_SIZE_RANGE` of the previous one's.
    """
    h, w = rgb.shape[:2]
    side = TRACK_REGION * max(previous.w, previous.h)
    cx, cy = previous.x + previous.w / 2, previous.y + previous.h / 2
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(w, int(cx + side / 2)), min(h, int(cy + side / 2))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    f = _shrink_factor(rgb.shape, settings.detect_max_side)
    box = _largest_many(detector, [np.ascontiguousarray(rgb[y0:y1, x0:x1])], [f])[0]
    if box is None:
        return None
    low, high = TRACK_SIZE_RANGE
    if not low <= max(box.w, box.h) / max(previous.w, previous.h) <= high:
        return None
    return FaceBox(box.x + x0, box.y + y0, box.w, box.h, box.score)


class _Tracker:
    """:func:`find_faces` with ``track=True``, frame by frame over one video (state kept across batches).

    The whole frame is searched on the first sampled frame, every :data:`TRACK_REFRESH` frames after it (a
    larger face that came into view is taken from there on) and whenever nothing is found near the last face.
    Only faces that would not be rejected as stray (:func:`outlier_faces` against the video's faces so far)
    are followed, so a background detection on a frame where the face was missed is not tracked afterwards.
    """

    def __init__(self, detector: FaceDetector, settings: ExtractSettings) -> None:
        self.detector, self.settings = detector, settings
        self.previous: FaceBox | None = None
        self.history: list[FaceBox] = []
        self.frames = 0

    def __call__(self, frames: Sequence[np.ndarray]) -> list[tuple[FaceBox | None, str | None]]:
        out: list[tuple[FaceBox | None, str | None]] = []
        for rgb in frames:
            box = None
            if self.previous is not None and self.frames % TRACK_REFRESH:
                box = track_face(self.detector, rgb, self.previous, self.settings)
            hit = (box, "tracked") if box is not None else find_faces(self.detector, [rgb], self.settings)[0]
            self.frames += 1
            if hit[0] is not None:
                self.history.append(hit[0])
                if not outlier_faces(self.history)[-1]:
                    self.previous = hit[0]
            out.append(hit)
        return out


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
    atomic_write_bytes(path, data)


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# PNG rows predicted from the row above (the "up" filter) instead of OpenCV's default "sub": on face crops
# 8% faster to write, 13% faster to read and 11% smaller, with the same pixels (lossless either way)
PNG_PARAMS = (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP)


def encode_png(rgb: np.ndarray) -> bytes:
    """A face crop (H, W, 3) RGB uint8 as the PNG bytes extraction writes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(PNG_PARAMS))
    if not ok:
        raise OSError(f"PNG encoding of a {rgb.shape} {rgb.dtype} array failed")
    return buf.tobytes()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    try:
        data = encode_png(rgb)
    except OSError as e:
        raise OSError(f"{path}: {e}") from e
    _atomic_write(path, data)


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
    _WORKER["threads"] = threads


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


def _batches(
    frames: Iterator[tuple[int, np.ndarray]], size: int, timing: dict[str, float]
) -> Iterator[tuple[list[tuple[int, np.ndarray]], VideoUnreadableError | None]]:
    """``frames`` in lists of ``size``; a decoding error ends the stream with the frames read before it."""
    while True:
        batch: list[tuple[int, np.ndarray]] = []
        t = time.perf_counter()
        try:
            for item in frames:
                batch.append(item)
                if len(batch) == size:
                    break
        except VideoUnreadableError as e:
            timing["decode"] += time.perf_counter() - t
            yield batch, e
            return
        timing["decode"] += time.perf_counter() - t
        if batch:
            yield batch, None
        if len(batch) < size:
            return


def process_video(record: VideoRecord, out_dir: Path, overwrite: bool = False) -> dict[str, Any]:
    """Crop the faces of one video (in a worker set up by ``_init_worker``); returns its marker dict.

    The returned dict also holds ``resumed`` and ``timing`` (seconds spent decoding, detecting, cropping
    and writing), which the marker file does not.
    """
    settings: ExtractSettings = _WORKER["settings"]
    detector: FaceDetector = _WORKER["detector"]
    vdir = out_dir / record.key
    signature = settings.signature(record.split)
    timing = {"decode": 0.0, "detect": 0.0, "write": 0.0}
    if not overwrite and (done := _resumable(vdir, signature)) is not None:
        return {**done, "resumed": True, "timing": timing}
    _clear_video_dir(vdir)
    fpv, stride, max_frame = settings.sampling(record.split)
    planned = sample_indices(fpv, stride, max_frame)
    result: dict[str, Any] = {"key": record.key, "frames_planned": len(planned), "settings": signature}
    sampled, found = 0, []
    tracker = _Tracker(detector, settings) if settings.track else None
    frames = read_frames(record.path, planned, threads=_WORKER.get("threads"))
    for batch, error in _batches(frames, settings.batch_size, timing):
        sampled += len(batch)
        t = time.perf_counter()
        try:
            images = [rgb for _, rgb in batch]
            hits = tracker(images) if tracker is not None else find_faces(detector, images, settings)
        except Exception as e:
            raise RuntimeError(
                f"{record.path}: face detector failed on frames {[i for i, _ in batch]} ({e})"
            ) from e
        for (idx, rgb), (box, how) in zip(batch, hits):
            if box is not None:
                found.append((idx, box, how, square_crop(rgb, box, settings.scale, settings.size)))
        timing["detect"] += time.perf_counter() - t
        if error is not None:
            if sampled == 0:
                # Not marked done: an unreadable file is often a partial download, worth retrying next run.
                return {
                    **result,
                    **{"status": "unreadable", "error": str(error), "frames_sampled": 0, "faces": []},
                    "timing": timing,
                }
            result["error"] = str(error)  # broke off mid-video: keep what was decoded (reported as short)
    t = time.perf_counter()
    boxes = [b for _, b, _, _ in found]
    stray = outlier_faces(boxes) if settings.reject_outliers else [False] * len(found)
    faces, rejected = [], []
    for (idx, box, how, crop), out in zip(found, stray):
        entry = {
            "frame": idx,
            "box": [round(v, 1) for v in (box.x, box.y, box.w, box.h)],
            "score": box.score,
            "found_by": how,
        }
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
    timing["write"] += time.perf_counter() - t
    return {**result, "resumed": False, "timing": timing}


def _run_one(args: tuple[VideoRecord, Path, bool]) -> tuple[VideoRecord, dict[str, Any]]:
    record, out_dir, overwrite = args
    return record, process_video(record, out_dir, overwrite)


def _run_videos(
    records: Sequence[VideoRecord],
    out_dir: Path,
    settings: ExtractSettings,
    workers: int,
    overwrite: bool,
    progress: bool,
    desc: str,
) -> list[tuple[VideoRecord, dict[str, Any]]]:
    """Process ``records`` (in this process or a pool of at most one worker per video); results in the
    order of ``records``."""
    tasks = [(rec, out_dir, overwrite) for rec in records]
    results: list[tuple[VideoRecord, dict[str, Any]]] = []
    workers = min(workers, len(tasks))
    if workers <= 1:
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
    for _, r in results:
        r.pop("timing", None)
    return results


# --------------------------------------------------------------------------------------------- index


def _read_index(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != INDEX_COLUMNS:
            raise FaceDataError(
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
    found_by = {p: 0 for p in FOUND_BY}
    for _, r in results:
        for f in r["faces"]:
            found_by[f.get("found_by") or "detect"] += 1
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
        "found_by": found_by,
        "frames_rejected": sum(len(r.get("rejected", [])) for _, r in results),
        "missing": _names(list(missing)),
        **{s: _names(by_status[s]) for s in FAILURES},
        "short": _names([rec.key for rec, r in results if r.get("short")]),
        "with_rejected": _names([rec.key for rec, r in results if r.get("rejected")]),
        "errors": {rec.key: r["error"] for rec, r in results if "error" in r},
        "skipped": {k: _names(list(v)) for k, v in skipped.items()},
        "per_dataset": per_dataset,
    }


def _finish(
    out_dir: Path,
    label: str,
    results: list[tuple[VideoRecord, dict[str, Any]]],
    missing: list[str],
    skipped: Mapping[str, list[str]],
    settings: ExtractSettings,
) -> dict[str, Any]:
    """Merge ``results`` into ``out_dir``'s index.csv and report.json (as ``label``); returns the report."""
    for stale in out_dir.glob(".*.tmp-*"):  # index/report temp files of an interrupted run
        stale.unlink(missing_ok=True)
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
    report_path = out_dir / "report.json"
    merged = json.loads(report_path.read_text()) if report_path.is_file() else {}
    merged[label] = report
    _write_json(report_path, merged)
    log.info(
        "%s: %d/%d videos with faces, %d/%d sampled frames with a face (found by %s); missing %d, "
        "unreadable %d, zero frames %d, no face %d (report: %s)",
        label,
        report["videos_with_faces"],
        report["videos_processed"],
        report["frames_with_face"],
        report["frames_sampled"],
        report["found_by"],
        report["missing"]["count"],
        report["unreadable"]["count"],
        report["zero_frames"]["count"],
        report["no_face"]["count"],
        report_path,
    )
    return report


# -------------------------------------------------------------------------------------------- shards


def shard_of(key: str, num_shards: int) -> int:
    """The shard (``0 .. num_shards - 1``) of video ``key``: its SHA-1 modulo ``num_shards``.

    Depends on the key alone (not on list order, the machine or Python's hash seed), so every shard of a
    cluster run agrees and a video keeps its shard when others are added or missing.
    """
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def _shard_dir(out_dir: Path, label: str) -> Path:
    return out_dir / SHARDS_DIR / re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def _shard_file(out_dir: Path, label: str, shard: int, num_shards: int) -> Path:
    return _shard_dir(out_dir, label) / f"shard-{shard:05d}-of-{num_shards:05d}.json"


def _record_json(rec: VideoRecord) -> dict[str, Any]:
    return {**asdict(rec), "path": str(rec.path)}


def _write_shard(
    out_dir: Path,
    label: str,
    shard: int,
    num_shards: int,
    order: Mapping[str, int],
    results: list[tuple[VideoRecord, dict[str, Any]]],
    missing: list[str],
    skipped: Mapping[str, list[str]],
    settings: ExtractSettings,
) -> Path:
    """One shard's part file: its videos' results (with their position in the dataset), missing, skipped."""
    path = _shard_file(out_dir, label, shard, num_shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    for other in path.parent.glob("shard-*.json"):  # parts of a run with another shard count
        if not other.name.endswith(f"-of-{num_shards:05d}.json"):
            other.unlink(missing_ok=True)
    part = {
        "name": label,
        "shard": shard,
        "num_shards": num_shards,
        "settings": {**asdict(settings), "detector_options": dict(settings.detector_options)},
        "videos": [{"order": order[rec.key], "record": _record_json(rec), "result": r} for rec, r in results],
        "missing": [[order[k], k] for k in missing],
        "skipped": {reason: [[order[k], k] for k in keys] for reason, keys in skipped.items()},
    }
    _write_json(path, part)
    return path


def merge_shards(out_dir: str | Path, name: str | None = None) -> dict[str, dict[str, Any]]:
    """Build ``out_dir``'s index.csv and report.json from the shard part files; returns ``{label: report}``.

    Merges every run label found under ``_shards/`` (or only ``name``). All ``num_shards`` parts of a label
    must be there with the same settings (else a ``ValueError`` names what is missing or differs); the
    result is what one unsharded run of the same videos writes. Run it once the shards are done (it is the
    only step that writes the shared files); it can be rerun, e.g. after a failed shard was redone.
    """
    out_dir = Path(out_dir)
    parts: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted((out_dir / SHARDS_DIR).glob("*/shard-*.json")):
        try:
            part = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise FaceDataError(f"{path}: not a valid shard part file ({e})") from e
        parts.setdefault(part["name"], []).append((path, part))
    if name is not None:
        if name not in parts:
            raise FaceDataError(
                f"{out_dir / SHARDS_DIR}: no shard parts for {name!r} (found {sorted(parts)})"
            )
        parts = {name: parts[name]}
    if not parts:
        raise FaceDataError(f"{out_dir / SHARDS_DIR}: no shard part files to merge")
    reports = {}
    for label, group in parts.items():
        counts = {p["num_shards"] for _, p in group}
        if len(counts) > 1:
            raise FaceDataError(
                f"{label}: shard parts of different shard counts {sorted(counts)}: {group[0][0].parent}"
            )
        n = counts.pop()
        have = {p["shard"] for _, p in group}
        absent = [i for i in range(n) if i not in have]
        if absent:
            raise FaceDataError(
                f"{label}: shard(s) {absent} of {n} have not finished (no "
                f"{_shard_file(out_dir, label, absent[0], n).name} in {group[0][0].parent})"
            )
        settings_seen = {json.dumps(p["settings"], sort_keys=True) for _, p in group}
        if len(settings_seen) > 1:
            raise FaceDataError(f"{label}: shard parts made with different settings in {group[0][0].parent}")
        settings = ExtractSettings(**group[0][1]["settings"])
        videos = sorted((v for _, p in group for v in p["videos"]), key=lambda v: v["order"])
        results = [
            (VideoRecord(**{**v["record"], "path": Path(v["record"]["path"])}), v["result"]) for v in videos
        ]
        missing = [k for _, k in sorted(m for _, p in group for m in p["missing"])]
        reasons = sorted({r for _, p in group for r in p["skipped"]})
        skipped = {
            r: [k for _, k in sorted(s for _, p in group for s in p["skipped"].get(r, []))] for r in reasons
        }
        reports[label] = _finish(out_dir, label, results, missing, skipped, settings)
    return reports


# ---------------------------------------------------------------------------------------------- entry


def extract_faces(
    videos: VideoIndex | Sequence[VideoRecord],
    out_dir: str | Path,
    settings: ExtractSettings | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    name: str | None = None,
    shard: int | None = None,
    num_shards: int = 1,
) -> dict[str, Any]:
    """Extract face crops of ``videos`` into ``out_dir``; returns the report (also merged into report.json).

    ``index.csv`` and ``report.json`` are merged with earlier runs into the same ``out_dir`` (rows of the
    videos processed now replace theirs; a report per ``<dataset>/<split>``), so train and test may share one
    folder; ``name`` labels this run's report (default: ``<dataset>/<split>`` of the records). ``workers``
    <= 1 runs in this process. Don't run two unsharded extractions into one folder at once.

    With ``num_shards > 1`` only the videos of shard ``shard`` (:func:`shard_of`) are processed and, instead
    of index.csv / report.json, a part file is written under ``_shards/`` (shards may run concurrently);
    :func:`merge_shards` then builds the shared files. The returned report covers this shard's videos.
    """
    settings = settings or ExtractSettings()
    if isinstance(videos, VideoIndex):
        records, missing, skipped = list(videos.videos), list(videos.missing), dict(videos.skipped)
    else:
        records, missing, skipped = list(videos), [], {}
    VideoIndex(list(records), [])  # checks the keys are unique
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ConfigError(f"num_shards must be a positive int, got {num_shards!r}")
    sharded = num_shards > 1
    if sharded and not (isinstance(shard, int) and 0 <= shard < num_shards):
        raise ConfigError(
            f"shard must be an int in [0, {num_shards}) with num_shards={num_shards}, got {shard!r}"
        )
    if not sharded and shard not in (None, 0):
        raise ConfigError(f"shard={shard} needs num_shards > {shard}")
    label = name or "+".join(sorted({f"{r.dataset}/{r.split}" for r in records})) or "unnamed"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    desc = f"faces -> {out_dir}"
    if sharded:
        order = {
            k: i
            for i, k in enumerate(
                [r.key for r in records] + missing + [k for v in skipped.values() for k in v]
            )
        }
        mine = lambda key: shard_of(key, num_shards) == shard  # noqa: E731
        records = [r for r in records if mine(r.key)]
        missing = [k for k in missing if mine(k)]
        skipped = {reason: [k for k in keys if mine(k)] for reason, keys in skipped.items()}
        desc += f" (shard {shard}/{num_shards})"
    results = _run_videos(records, out_dir, settings, workers, overwrite, progress, desc)
    if not sharded:
        return _finish(out_dir, label, results, missing, skipped, settings)
    part = _write_shard(out_dir, label, shard, num_shards, order, results, missing, skipped, settings)
    report = _build_report(results, missing, skipped, settings)
    report["shard_file"] = str(part)
    log.info(
        "%s shard %d/%d: %d/%d videos with faces, %d/%d sampled frames with a face (part: %s; run "
        "merge_shards / merge=true when all shards are done)",
        label,
        shard,
        num_shards,
        report["videos_with_faces"],
        report["videos_processed"],
        report["frames_with_face"],
        report["frames_sampled"],
        part,
    )
    return report


def scaled_video_copy(
    src: str | Path, dst: str | Path, height: int = 1080, frames: int | None = None, crf: int = 23
) -> Path:
    """Write ``src`` (its first ``frames`` frames) resized to ``height`` rows as H.264 ``dst`` (an .mp4).

    For benchmarks without a 1080p sample (e.g. a shared 720p FF++ video upscaled): encoded as x264 encodes
    FF++ / DFDC (B-frames, a keyframe per 250 frames, 4:2:0), at ``crf``; the width keeps the aspect ratio
    (rounded to even). Written to a temp name, then renamed.
    """
    import av

    src, dst = Path(src), Path(dst)
    with av.open(str(src)) as c:
        fps = c.streams.video[0].average_rate or 25
        n = frames if frames is not None else sum(1 for _ in c.demux(c.streams.video[0]))
    with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:
        stream = None
        for _, rgb in read_frames(src, range(n)):
            h, w = rgb.shape[:2]
            size = (2 * round(w * height / h / 2), height)
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height = size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "g": "250", "bframes": "3"}
            interp = cv2.INTER_CUBIC if height > h else cv2.INTER_AREA
            frame = av.VideoFrame.from_ndarray(cv2.resize(rgb, size, interpolation=interp), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        if stream is None:
            raise VideoUnreadableError(f"{src}: no frames to copy")
        for packet in stream.encode():
            out.mux(packet)
    return dst


def extraction_throughput(
    video: str | Path,
    settings: ExtractSettings | None = None,
    split: str = "test",
    threads: int | None = 1,
    repeats: int = 1,
) -> dict[str, Any]:
    """Frames per second of one extraction worker on ``video`` (decode, detect, crop, write PNGs).

    Runs the worker's per-video work ``repeats`` times into a temp folder (nothing resumed) with ``threads``
    decoder / OpenCV threads (1, as in an extraction pool; ``None``: the libraries' choice) after building
    the detector and one warm-up detection, and reports the median repeat (by time; every repeat's
    seconds in ``seconds_all``, so a run disturbed by the rest of the machine shows): ``frames`` (sampled, per
    ``split``'s preset unless ``settings`` fix it), ``seconds``, ``frames_per_s``, the process's CPU time
    (``cpu_seconds``, ``frames_per_cpu_s``: with one thread, the rate on an idle core even when the machine
    is shared), the seconds spent in ``decode`` / ``detect`` / ``write``, the frames with a face and
    ``found_by``, plus the video's size.
    """
    settings = settings or ExtractSettings()
    video = Path(video)
    _init_worker(settings, threads)
    _largest(_WORKER["detector"], np.zeros((64, 64, 3), np.uint8))  # lazy initialisation of the nets
    record = VideoRecord(f"bench/{video.stem}", video, 0, "bench", "bench", "na", split)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(1, repeats)):
            t, cpu = time.perf_counter(), time.process_time()
            r = process_video(record, Path(tmp), overwrite=True)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            runs.append({"seconds": seconds, "cpu_seconds": cpu, "result": r})
    runs.sort(key=lambda run: run["seconds"])
    median = runs[(len(runs) - 1) // 2]  # the faster of the middle two for an even count
    r = median["result"]
    if r["status"] == "unreadable":
        raise VideoUnreadableError(r["error"])
    h, w = next(read_frames(video, [0]))[1].shape[:2]
    found_by = {p: 0 for p in FOUND_BY}
    for f in r["faces"]:
        found_by[f["found_by"]] += 1
    return {
        "video": str(video),
        "width": w,
        "height": h,
        "threads": threads,
        "frames": r["frames_sampled"],
        "repeats": len(runs),
        "seconds": median["seconds"],
        "seconds_all": [run["seconds"] for run in runs],
        "frames_per_s": r["frames_sampled"] / median["seconds"] if median["seconds"] > 0 else None,
        "cpu_seconds": median["cpu_seconds"],
        "frames_per_cpu_s": r["frames_sampled"] / median["cpu_seconds"]
        if median["cpu_seconds"] > 0
        else None,
        "decode_s": r["timing"]["decode"],
        "detect_s": r["timing"]["detect"],
        "write_s": r["timing"]["write"],
        "frames_with_face": len(r["faces"]),
        "found_by": found_by,
    }
