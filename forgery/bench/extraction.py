"""Face-extraction throughput (frames per second per worker) on a generated 1080p video.

:func:`extraction_throughput` is the one place that knows how to measure it: it calls
``forgery.data.faces.extract.extraction_throughput(video_path, settings)`` when the extraction module
provides it, and otherwise times the current path (:func:`~forgery.data.faces.extract.process_video`: decode,
detect, crop, write PNGs) on one video in this process with OpenCV on one thread, as one worker of
``forgery-faces`` runs.

The video (:func:`make_face_video`) is a scikit-image face photo (the astronaut), enlarged to a ~250 px face,
moving a little on a textured 1920 x 1080 background: a talking-head shot at FF++'s resolution.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forgery.bench.loaders import scene
from forgery.data.faces import extract
from forgery.data.faces.extract import ExtractSettings
from forgery.data.faces.sources import VideoRecord

__all__ = ["extraction_throughput", "make_face_video"]


def make_face_video(
    path: str | Path, frames: int = 60, size: tuple[int, int] = (1080, 1920), fps: float = 25.0, seed: int = 0
) -> Path:
    """Writes an MP4 (``mp4v``) of ``frames`` frames of (H, W) = ``size`` with one moving face."""
    from forgery.data.faces.synth import bundled_face_photos

    path = Path(path)
    h, w = size
    face = next(img for name, img in bundled_face_photos(scale=1.8) if name == "astronaut")
    side = min(h, w) // 3
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    background = scene(np.random.default_rng(seed), h, w)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an mp4v video here")
    try:
        for i in range(frames):
            frame = background.copy()
            x = w // 2 - side // 2 + int(40 * np.sin(i / 10))
            y = h // 2 - side // 2 + int(20 * np.cos(i / 7))
            frame[y : y + side, x : x + side] = face
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _time_current_path(video_path: Path, settings: ExtractSettings) -> dict[str, Any]:
    """One worker of the current extraction path on one video: sampled frames per second."""
    extract._init_worker(settings, 1)
    record = VideoRecord("bench/video", Path(video_path), 0, "bench", "na", "na", "test")
    with tempfile.TemporaryDirectory(prefix="forgery-bench-extract-") as out:
        t0 = time.perf_counter()
        result = extract.process_video(record, Path(out), overwrite=True)
        seconds = time.perf_counter() - t0
    sampled = int(result["frames_sampled"])
    return {
        "frames_sampled": sampled,
        "frames_with_face": len(result["faces"]),
        "seconds": seconds,
        "frames_per_s_per_worker": sampled / seconds if seconds > 0 else None,
    }


def extraction_throughput(video_path: str | Path, settings: ExtractSettings) -> dict[str, Any]:
    """Frames per second per worker of face extraction on ``video_path`` (see the module docstring)."""
    own = getattr(extract, "extraction_throughput", None)
    if own is not None:
        return {**own(Path(video_path), settings), "measured_by": "forgery.data.faces.extract"}
    return {**_time_current_path(Path(video_path), settings), "measured_by": "forgery.bench (process_video)"}
