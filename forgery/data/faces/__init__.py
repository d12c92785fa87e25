"""Face-forgery data: video indexers, face extraction, the frame dataset and the faces_synth default.

Indexers are imported eagerly (pure Python); the rest load on first use, so extraction workers do not import
torch and the dataset does not import OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

from forgery.data.faces.sources import (
    FFPP_METHODS,
    INDEX_COLUMNS,
    INDEXERS,
    FaceDataError,
    VideoIndex,
    VideoRecord,
    index_videos,
)

_LAZY = {
    "ExtractSettings": "forgery.data.faces.extract",
    "extract_faces": "forgery.data.faces.extract",
    "extraction_throughput": "forgery.data.faces.extract",
    "merge_shards": "forgery.data.faces.extract",
    "FaceBox": "forgery.data.faces.detectors",
    "make_detector": "forgery.data.faces.detectors",
    "register_detector": "forgery.data.faces.detectors",
    "FaceFrameDataset": "forgery.data.faces.dataset",
    "build_faces_synth": "forgery.data.faces.synth",
    "self_blend": "forgery.data.faces.synth",
}

__all__ = [
    "FFPP_METHODS",
    "INDEXERS",
    "INDEX_COLUMNS",
    "FaceDataError",
    "VideoIndex",
    "VideoRecord",
    "index_videos",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
