"""Metrics: splicing localization (pixel/image level) and face-forgery detection (frame/video level)."""

from forgery.metrics.bootstrap import bootstrap_ci, summarize_seeds
from forgery.metrics.detection import DetectionMetrics, detection_metrics
from forgery.metrics.localization import LocalizationMetrics, localization_metrics
from forgery.metrics.options import MetricOptions

__all__ = [
    "DetectionMetrics",
    "LocalizationMetrics",
    "MetricOptions",
    "bootstrap_ci",
    "detection_metrics",
    "localization_metrics",
    "summarize_seeds",
]
