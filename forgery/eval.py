"""Evaluation entry point: ``forgery-eval ckpt_path=... [data=... data.root=...]``.

Rebuilds the model from the checkpoint (loaded with ``weights_only=True``), tests it on the configured data
and writes ``metrics.json`` (every metric, the dataset name and size) in the run directory. ``eval_tile=512``
evaluates a splicing model tile by tile (with ``data.eval_resize=tile``: native size, bounded memory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig

from forgery.metrics.card import report_blocks
from forgery.modules import load_module
from forgery.train import CONFIG_DIR
from forgery.utils.instantiate import instantiate_loggers
from forgery.utils.run import extras, to_floats, write_json

__all__ = ["apply_tiling", "evaluate", "main"]

log = logging.getLogger(__name__)


def apply_tiling(module: Any, tile: int | None, overlap: int | None = None) -> None:
    """Eval-time tiling override (``eval_tile=``, ``eval_tile_overlap=``) of a module rebuilt from its
    checkpoint; None keeps the checkpoint's setting. Only splicing models tile."""
    if tile is None and overlap is None:
        return
    if not hasattr(module, "set_eval_tiling"):
        raise ValueError(f"eval_tile applies to splicing models, not to {type(module).__name__}")
    module.set_eval_tiling(module.hparams.get("eval_tile") if tile is None else tile, overlap)
    log.info(
        "tiled evaluation: eval_tile=%s, overlap=%s",
        module.hparams.eval_tile,
        module.hparams.eval_tile_overlap,
    )


def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tests ``cfg.ckpt_path`` on ``cfg.data``; returns (metrics, objects) and writes metrics.json."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    overrides = {}
    if cfg.get("whole_dataset", True) and "split" in cfg.data:
        overrides["split"] = {**cfg.data.split, "val_fraction": 0.0, "test_fraction": 1.0}
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all", **overrides)
    module = load_module(cfg.ckpt_path, kind=getattr(datamodule, "kind", None))
    apply_tiling(module, cfg.get("eval_tile"), cfg.get("eval_tile_overlap"))
    module.set_metric_options(cfg.get("metrics"))
    trained = (module.build_config or {}).get("data") or {}
    size = cfg.data.get("image_size")
    if trained.get("image_size") and size and trained["image_size"] != size:
        log.warning("evaluating at image_size=%s; the model was trained at %s", size, trained["image_size"])
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=[])
    results = trainer.test(module, datamodule=datamodule)
    metrics = to_floats(results[0] if results else {})
    if trainer.is_global_zero:
        path = write_json(
            Path(cfg.paths.output_dir) / "metrics.json",
            {
                "dataset": datamodule.test_name,
                "split": "test",
                "size": len(datamodule.records["test"]),
                "checkpoint": str(cfg.ckpt_path),
                **report_blocks(
                    module,
                    datamodule,
                    metrics,
                    checkpoint=str(cfg.ckpt_path),
                    split_hash=getattr(datamodule, "split_hash", None),
                    perturbation=cfg.get("perturb"),
                ),
            },
        )
        log.info("metrics written to %s", path)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": module, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
