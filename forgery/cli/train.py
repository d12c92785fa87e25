"""``forgery-train`` (``python -m forgery.cli.train``): train, then test the best checkpoint.

Config: ``conf/train.yaml``; :func:`train` is the pure function, :func:`main` its Hydra wrapper.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgery.cli import hydra_app
from forgery.data.manifest import manifest_summary, write_split_manifests
from forgery.utils.run import extras, resolve_ckpt_path, to_floats, write_json

# torch / Lightning are imported inside train(): --help and --cfg job compose the config without them

__all__ = ["train", "main"]

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trains (and optionally tests) the configured model.

    Returns:
        metrics: every logged metric (train, val, test) as floats.
        objects: cfg, datamodule, model, callbacks, loggers, trainer.
    """
    import hydra
    import lightning.pytorch as pl

    from forgery.cli.eval import write_face_scores
    from forgery.metrics.card import checkpoint_selection, report_blocks
    from forgery.modules import build_module, check_task
    from forgery.utils.instantiate import instantiate_callbacks, instantiate_loggers

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = build_module(cfg.model, cfg.loss, cfg.get("augmentation"))
    check_task(model, datamodule)
    model.set_metric_options(cfg.get("metrics"))
    model.build_config["data"] = {"name": cfg.data.get("name"), "image_size": cfg.data.get("image_size")}
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    model.build_config["selection"] = checkpoint_selection(trainer)  # into checkpoints: the metric card
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }

    if cfg.get("train", True):
        trainer.fit(
            model, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
        )
    metrics = to_floats(trainer.callback_metrics)

    has_test = cfg.get("test", False)
    if has_test and not datamodule.records:
        datamodule.prepare_data()
        datamodule.setup("test")
    if trainer.is_global_zero:  # the run's split manifests: splits/<split>.txt and SHA256SUMS
        objects["splits"] = write_split_manifests(datamodule, output_dir)
    if has_test and not datamodule.records.get("test"):
        log.warning("no test split (data.split.test_fraction=0 and no data.test): skipping the test stage")
        has_test = False
    if has_test:
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not ckpt or trainer.fast_dev_run:
            log.warning("no best checkpoint; testing the current weights")
            ckpt = None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)
        test_metrics = to_floats(results[0] if results else {})
        metrics.update(test_metrics)
        if trainer.is_global_zero:
            write_json(
                output_dir / "metrics.json",
                {
                    "dataset": datamodule.test_name,
                    "split": "test",
                    "size": len(datamodule.records["test"]),
                    "checkpoint": ckpt,
                    **report_blocks(
                        model, datamodule, test_metrics, checkpoint=ckpt, splits=manifest_summary(output_dir)
                    ),
                    # the last validation epoch's metrics of this run (what a training sweep compares)
                    "val_metrics": {k: v for k, v in metrics.items() if k.startswith("val/")},
                    "splits": manifest_summary(output_dir),
                    **write_face_scores(model, datamodule, output_dir),
                },
            )
    return metrics, objects


@hydra_app("train", prog="forgery-train")
def main(cfg: DictConfig) -> float | None:
    """Thin Hydra wrapper; returns ``cfg.optimized_metric`` for sweepers."""
    extras(cfg)
    metrics, _ = train(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    main()
