"""Metrics: splicing localization (pixel/image level) and face-forgery detection (frame/video level)."""

from forgery.metrics.detection import DetectionMetrics, detection_metrics
from forgery.metrics.localization import LocalizationMetrics, localization_metrics

__all__ = ["DetectionMetrics", "LocalizationMetrics", "detection_metrics", "localization_metrics"]
