"""Face-extraction throughput (frames per second per worker) on a generated 1080p video.

:func:`extraction_throughput` runs ``forgery.data.faces.extract.extraction_throughput`` (decode the sampled
frames, detect, crop, write PNGs) on one video, one thread, as one worker of ``forgery-faces`` runs.

The video (:func:`make_face_video`) is a scikit-image face photo (the astronaut), enlarged to a ~250 px face,
moving a little on a textured 1920 x 1080 background: a talking-head shot at FF++'s resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from forgery.bench.loaders import scene
from forgery.data.faces import extract
from forgery.data.faces.extract import ExtractSettings

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


def extraction_throughput(
    video_path: str | Path, settings: ExtractSettings, repeats: int = 1
) -> dict[str, Any]:
    """Frames per second of one extraction worker on ``video_path`` (one thread), the median of ``repeats``
    runs, from :func:`forgery.data.faces.extract.extraction_throughput`; ``frames_per_cpu_s`` is the
    per-core rate, which holds better than wall time on a shared machine."""
    r = extract.extraction_throughput(Path(video_path), settings, split="test", threads=1, repeats=repeats)
    return {
        "frames_sampled": r["frames"],
        "frames_with_face": r["frames_with_face"],
        "found_by": r["found_by"],
        "repeats": r["repeats"],
        "seconds": r["seconds"],
        "seconds_all": r["seconds_all"],
        "frames_per_s_per_worker": r["frames_per_s"],
        "frames_per_cpu_s": r["frames_per_cpu_s"],
        "decode_s": r.get("decode_s"),
        "detect_s": r.get("detect_s"),
        "width": r.get("width"),
        "height": r.get("height"),
        "measured_by": "forgery.data.faces.extract.extraction_throughput",
    }
