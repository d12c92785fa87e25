"""Evaluation-protocol options: the ``metrics:`` config group shared by forgery-train and forgery-eval.

They are choices of how a model is measured, not properties of the model, so they live outside the model
config (and outside checkpoints): ``forgery-eval ckpt_path=... metrics.extra=[best_threshold_f1]`` measures
a trained model with another protocol without retraining. The decision threshold stays ``model.threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from forgery.errors import ConfigError

__all__ = ["MetricOptions", "BootstrapSpec", "EXTRA_VARIANTS", "VIDEO_AGGREGATIONS"]

_WHERE = "forgery.metrics.options (config group metrics:)"

# variants papers report; logged as <stage>/extra/<name>, never as a headline metric
EXTRA_VARIANTS = ("best_threshold_f1", "permuted_f1", "border_f1")
VIDEO_AGGREGATIONS = ("mean", "max", "topk_mean", "median")


def _int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{_WHERE}: {name} must be an int >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class BootstrapSpec:
    """Bootstrap intervals of the test metrics: ``n`` resamples (0: none), ``seed``, coverage ``level``;
    ``hist_bins``: per-image histogram bins behind the ``pixel_auroc_global`` interval (None: the largest
    divisor of ``model.num_bins`` up to 100; 0: no such interval, no per-image histograms kept)."""

    n: int = 1000
    seed: int = 0
    level: float = 0.95
    hist_bins: int | None = None

    def __post_init__(self) -> None:
        _int("bootstrap.n", self.n, 0)
        _int("bootstrap.seed", self.seed, 0)
        if isinstance(self.level, bool) or not isinstance(self.level, (int, float)) or not 0 < self.level < 1:
            raise ConfigError(f"{_WHERE}: bootstrap.level must be in (0, 1), e.g. 0.95, got {self.level!r}")
        object.__setattr__(self, "level", float(self.level))
        if self.hist_bins is not None:
            _int("bootstrap.hist_bins", self.hist_bins, 0)


@dataclass(frozen=True)
class MetricOptions:
    """See ``conf/metrics/default.yaml``.

    Args:
        extra: variants of :data:`EXTRA_VARIANTS` to add, labelled ``extra/<name>``.
        border_px: k of ``border_f1`` (pixels within k px of the mask boundary are left out).
        bootstrap: :class:`BootstrapSpec`.
        video_aggregation: frame probabilities -> video score (:data:`VIDEO_AGGREGATIONS`).
        video_topk: k of ``topk_mean`` (the mean of a video's k highest frame probabilities).
        ece_bins: equal-width bins of the expected calibration error (frame and video).
    """

    extra: tuple[str, ...] = ()
    border_px: int = 8
    bootstrap: BootstrapSpec = field(default_factory=BootstrapSpec)
    video_aggregation: str = "mean"
    video_topk: int = 5
    ece_bins: int = 15

    def __post_init__(self) -> None:
        extra = self.extra
        if isinstance(extra, str) or not isinstance(extra, Sequence):
            raise ConfigError(
                f"{_WHERE}: extra must be a list of names from {list(EXTRA_VARIANTS)}, got {extra!r}"
            )
        unknown = [e for e in extra if e not in EXTRA_VARIANTS]
        if unknown:
            raise ConfigError(
                f"{_WHERE}: unknown extra variant(s) {unknown}; choose from {list(EXTRA_VARIANTS)}"
            )
        object.__setattr__(self, "extra", tuple(dict.fromkeys(extra)))
        _int("border_px", self.border_px, 0)
        if self.video_aggregation not in VIDEO_AGGREGATIONS:
            raise ConfigError(
                f"{_WHERE}: video_aggregation must be one of {list(VIDEO_AGGREGATIONS)}, got "
                f"{self.video_aggregation!r}"
            )
        _int("video_topk", self.video_topk, 1)
        _int("ece_bins", self.ece_bins, 1)
        if isinstance(self.bootstrap, Mapping):
            object.__setattr__(
                self, "bootstrap", BootstrapSpec(**_known(dict(self.bootstrap), BootstrapSpec))
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | MetricOptions | None) -> MetricOptions:
        """From the ``metrics:`` config (a DictConfig or a dict; None: the defaults). Unknown keys raise."""
        if cfg is None:
            return cls()
        if isinstance(cfg, MetricOptions):
            return cfg
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{_WHERE}: expected a mapping, got {type(cfg).__name__}")
        return cls(**_known(dict(cfg), cls))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["extra"] = list(self.extra)
        return out


def _known(cfg: dict[str, Any], cls: type) -> dict[str, Any]:
    names = set(cls.__dataclass_fields__)
    unknown = sorted(set(cfg) - names)
    if unknown:
        prefix = "bootstrap." if cls is BootstrapSpec else ""
        raise ConfigError(
            f"{_WHERE}: unknown key(s) {[prefix + k for k in unknown]}; "
            f"known: {sorted(prefix + n for n in names)}"
        )
    return cfg
