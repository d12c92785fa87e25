"""``forgery-eval ckpt_path=... [data=... data.root=...]`` (``python -m forgery.cli.eval``, conf/eval.yaml).

Rebuilds the model from the checkpoint (loaded with ``weights_only=True``), tests it on the configured data
and writes ``metrics.json`` (every metric, the dataset name and size) in the run directory. ``eval_tile=512``
evaluates a splicing model tile by tile (with ``data.eval_resize=tile``: native size, bounded memory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from forgery.cli import hydra_app
from forgery.data.manifest import manifest_summary, write_split_manifests
from forgery.errors import ConfigError
from forgery.utils.run import extras, overridden, to_floats, write_json

# torch / Lightning are imported inside evaluate(): --help and --cfg job compose the config without them

__all__ = ["apply_tiling", "evaluate", "main", "use_trained_size", "write_face_scores"]

log = logging.getLogger(__name__)


def apply_tiling(module: Any, tile: int | None, overlap: int | None = None) -> None:
    """Eval-time tiling override (``eval_tile=``, ``eval_tile_overlap=``) of a module rebuilt from its
    checkpoint; None keeps the checkpoint's setting. Only splicing models tile."""
    if tile is None and overlap is None:
        return
    if not hasattr(module, "set_eval_tiling"):
        raise ConfigError(f"eval_tile applies to splicing models, not to {type(module).__name__}")
    module.set_eval_tiling(module.hparams.get("eval_tile") if tile is None else tile, overlap)
    log.info(
        "tiled evaluation: eval_tile=%s, overlap=%s",
        module.hparams.eval_tile,
        module.hparams.eval_tile_overlap,
    )


def write_face_scores(module: Any, datamodule: Any, out_dir: str | Path) -> dict[str, Any]:
    """A face model's test frames as ``scores.csv`` (``video,frame,label,prob``: ROC / PR curves, reanalysis)
    and, when the fakes come from several methods (FF++), the metrics per method (reals + that method's
    fakes). Returns ``{"per_method": {...}}`` for metrics.json (empty for other models)."""
    scores = getattr(module, "test_scores", None)
    dataset = getattr(datamodule, "datasets", {}).get("test")
    if not scores or scores.get("video_ids") is None or dataset is None:
        return {}
    from forgery.metrics.detection import per_method_metrics
    from forgery.utils.io import atomic_write_text

    keys = list(dataset.video_keys)
    probs, labels, ids = scores["probs"], scores["labels"], scores["video_ids"]
    lines = ["video,label,prob"]
    lines += [f"{keys[int(i)]},{int(y)},{float(p)!r}" for p, y, i in zip(probs, labels, ids)]
    atomic_write_text(Path(out_dir) / "scores.csv", "\n".join(lines) + "\n")
    opts = getattr(module, "metric_options", None)
    per_method = per_method_metrics(
        probs,
        labels,
        ids,
        keys,
        module.hparams.get("threshold", 0.5),
        getattr(opts, "video_aggregation", "mean"),
        getattr(opts, "video_topk", 5),
    )
    return {"per_method": per_method} if per_method else {}


def use_trained_size(cfg: DictConfig, trained: dict[str, Any] | None) -> int | None:
    """Sets ``cfg.data.image_size`` to the size the checkpoint was trained at, unless the command line set it
    (then it says so when the two differ). Returns the trained size (None when the checkpoint has none)."""
    size = (trained or {}).get("image_size")
    if not size or "image_size" not in cfg.data:
        return size
    if overridden("data.image_size"):
        if cfg.data.image_size != size:
            log.warning(
                "evaluating at data.image_size=%s as asked; the model was trained at %s",
                cfg.data.image_size,
                size,
            )
    elif cfg.data.image_size != size:
        log.info("evaluating at image_size=%s, the size the model was trained at (checkpoint)", size)
        with open_dict(cfg):
            cfg.data.image_size = size
    return size


def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tests ``cfg.ckpt_path`` on ``cfg.data``; returns (metrics, objects) and writes metrics.json.

    The images are resized to the size the checkpoint was trained at unless ``data.image_size`` is given.
    """
    ckpt_path = cfg.ckpt_path  # a missing required value is reported before the slow imports
    import hydra
    import lightning.pytorch as pl

    from forgery.metrics.card import report_blocks
    from forgery.modules import check_task, load_module
    from forgery.utils.instantiate import instantiate_loggers

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    module = load_module(ckpt_path)
    use_trained_size(cfg, (module.build_config or {}).get("data"))
    overrides = {}
    if cfg.get("whole_dataset", True) and "split" in cfg.data:
        overrides["split"] = {**cfg.data.split, "val_fraction": 0.0, "test_fraction": 1.0}
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all", **overrides)
    check_task(module, datamodule, checkpoint=cfg.ckpt_path)
    apply_tiling(module, cfg.get("eval_tile"), cfg.get("eval_tile_overlap"))
    perturbation = hydra.utils.instantiate(cfg.perturb) if cfg.get("perturb") else None
    module.set_perturbation(perturbation)
    module.set_metric_options(cfg.get("metrics"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=[])
    results = trainer.test(module, datamodule=datamodule)
    metrics = to_floats(results[0] if results else {})
    if trainer.is_global_zero:
        write_split_manifests(datamodule, cfg.paths.output_dir, splits=["test"])
        path = write_json(
            Path(cfg.paths.output_dir) / "metrics.json",
            {
                "dataset": datamodule.test_name,
                "split": "test",
                "size": len(datamodule.records["test"]),
                "checkpoint": str(Path(cfg.ckpt_path).resolve()),
                **report_blocks(
                    module,
                    datamodule,
                    metrics,
                    checkpoint=str(cfg.ckpt_path),
                    splits=manifest_summary(cfg.paths.output_dir),
                    perturbation=perturbation.describe() if perturbation is not None else None,
                ),
                "perturbation": perturbation.describe() if perturbation is not None else {"name": "none"},
                "splits": manifest_summary(cfg.paths.output_dir),
                **write_face_scores(module, datamodule, cfg.paths.output_dir),
            },
        )
        log.info("metrics written to %s", path)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": module, "trainer": trainer}


@hydra_app("eval", prog="forgery-eval")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
