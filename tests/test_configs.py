"""Every experiment composes and runs fast_dev_run; train -> eval gives the same test metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from forgery.cli.eval import evaluate
from forgery.cli.train import train
from tests.conftest import EXPERIMENTS, SMALL_FACES, SMALL_SPLICING, real_data

SMALL = {"mtse": SMALL_SPLICING, "mat": SMALL_FACES}


def _small(experiment: str) -> list[str]:
    """Tiny data for a fast_dev_run; real-data recipes run on the shared samples (or synthetic faces)."""
    if experiment == "mtse_casia2":
        root = real_data("splicing", "casia2")
        return [
            f"data.root={root}",
            "data.image_size=64",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.split.val_fraction=0.2",
            "data.split.test_fraction=0.2",
        ]
    return SMALL[experiment.split("_")[0]]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(make_cfg, experiment: str) -> None:
    cfg = make_cfg("train", [f"experiment={experiment}"])
    assert cfg.model._target_.startswith("forgery.modules.")
    assert cfg.model.optimizer._partial_ is True
    assert cfg.callbacks.model_checkpoint.monitor == cfg.optimized_metric


def test_paper_recipe_mtse_casia2(make_cfg) -> None:
    cfg = make_cfg("train", ["experiment=mtse_casia2"])
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 1e-3
    assert cfg.data.batch_size == 8 and cfg.data.image_size == 384
    assert list(cfg.model.scheduler.milestones) == [150000] and cfg.model.scheduler.gamma == 0.1
    assert cfg.model.scheduler_interval == "step"
    assert cfg.data.split.val_fraction > 0 and cfg.data.split.test_fraction == 0
    assert cfg.loss.mask_edge_weight == 0.2 and cfg.loss.image_edge_weight == 0.8


def test_typo_fails_at_compose_time(make_cfg) -> None:
    with pytest.raises(ConfigCompositionException):
        make_cfg("train", ["model.optimzer.lr=0.1"])
    with pytest.raises(ConfigCompositionException):
        make_cfg("train", ["data=casia3"])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(make_cfg, experiment: str) -> None:
    cfg = make_cfg("train", [f"experiment={experiment}", "+trainer.fast_dev_run=true", *_small(experiment)])
    if experiment.startswith("mat"):
        OmegaConf.update(cfg, "model.net.backbone", "tf_efficientnet_b0")
    metrics, objects = train(cfg)
    assert "train/loss" in metrics and metrics["train/loss"] == metrics["train/loss"]  # not NaN
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert report["split"] == "test" and report["size"] == objects["datamodule"].records["test"].__len__()


def test_train_then_eval_metrics_match(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "train",
        ["experiment=mtse_synth", "trainer.max_epochs=1", "trainer.precision=32-true", *SMALL_SPLICING],
    )
    metrics, _ = train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    trained = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for name in ("test/pixel_f1", "test/pixel_iou", "test/pixel_mcc", "test/pixel_auroc", "test/image_auroc"):
        assert name in trained["metrics"]
    best = trained["checkpoint"]
    eval_cfg = make_cfg("eval", [f"ckpt_path={best}", *SMALL_SPLICING])
    eval_metrics, _ = evaluate(eval_cfg)
    for k, v in trained["metrics"].items():
        if v is not None and k != "test/loss":
            assert eval_metrics[k] == pytest.approx(v, abs=1e-6), k
