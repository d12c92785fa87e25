"""Splicing-localisation datasets: image/mask readers and per-dataset indexers."""

from forgery.data.splicing.io import MASK_RULES, DataError, load_image, load_mask
from forgery.data.splicing.sources import (
    DATASETS,
    IMAGE_EXTENSIONS,
    IndexResult,
    SplicingRecord,
    index_dataset,
    index_dataset_report,
)

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "MASK_RULES",
    "DataError",
    "IndexResult",
    "SplicingRecord",
    "index_dataset",
    "index_dataset_report",
    "load_image",
    "load_mask",
]
