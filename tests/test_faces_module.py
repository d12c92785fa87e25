"""FaceForgeryModule: AGDA pass in training, RIL state in checkpoints, two-stage init, frame/video metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from forgery.cli.eval import evaluate
from forgery.cli.train import train
from forgery.modules import build_module, load_module
from tests.conftest import SMALL_FACES

# float32: train-time test metrics and forgery-eval (float32) must agree exactly
TINY = [
    "experiment=mat_synth",
    *SMALL_FACES,
    "model.net.backbone=tf_efficientnet_b0",
    "trainer.precision=32-true",
]


def test_training_step_runs_agda_pass_and_updates_centers(make_cfg) -> None:
    cfg = make_cfg("train", TINY)
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    # the RIL centers were sized to the backbone's shallow channels (B0: 24)
    assert tuple(module.loss.ril.centers.shape) == (4, module.net.ril_channels) == (4, 24)
    torch.manual_seed(0)
    images = torch.rand(4, 3, 64, 64)
    labels = torch.tensor([0, 1, 0, 1])
    module.train()
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)  # type: ignore[method-assign]
    module.log_dict = lambda d, **kw: logged.update(d)  # type: ignore[method-assign]
    loss = module.training_step({"image": images, "label": labels, "key": ["a"] * 4}, 0)
    assert torch.isfinite(loss)
    for term in ("ce", "ril", "agda_ce", "match"):
        assert f"train/loss_{term}" in logged
    total = logged["train/loss_ce"] + 0.5 * logged["train/loss_ril"] + logged["train/loss_agda_ce"]
    total = total + 0.1 * logged["train/loss_match"]
    assert float(loss) == pytest.approx(float(total), rel=1e-5)
    assert bool(module.loss.ril.centers.abs().sum() > 0)
    loss.backward()
    assert all(p.grad is not None for n, p in module.net.named_parameters() if "attention" in n)


def test_centers_and_alpha_survive_checkpoint_and_eval(make_cfg) -> None:
    cfg = make_cfg("train", [*TINY, "trainer.max_epochs=2", "+trainer.limit_train_batches=2"])
    metrics, objects = train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    raw = torch.load(last, weights_only=True)["state_dict"]
    assert {"loss.ril.centers", "loss.ril.alpha", "loss.ril.decayed_epochs"} <= set(raw)
    # epoch 1 trained with alpha = 0.05 * 0.9 (one decay per finished epoch)
    assert (
        float(raw["loss.ril.alpha"]) == pytest.approx(0.05 * 0.9) and int(raw["loss.ril.decayed_epochs"]) == 1
    )
    restored = load_module(last, kind="faces")
    assert torch.equal(restored.loss.ril.centers, raw["loss.ril.centers"])
    assert float(restored.loss.ril.alpha) == pytest.approx(0.05 * 0.9)
    assert bool(restored.loss.ril.centers.abs().sum() > 0)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for key in ("acc", "auc", "eer", "ap", "video_acc", "video_auc"):
        assert f"test/{key}" in report["metrics"]
    # test identities: 2 photos x (real, fake) videos of 2 frames each
    assert report["metrics"]["test/n_videos"] == 4 and report["metrics"]["test/n_frames"] == 8
    # the pictures of the attention maps and AGDA examples
    assert sorted(p.name for p in (Path(cfg.paths.output_dir) / "predictions").glob("*.png"))
    # forgery-eval on the same checkpoint reproduces the best checkpoint's test metrics
    eval_cfg = make_cfg("eval", [f"ckpt_path={report['checkpoint']}", *SMALL_FACES])
    eval_metrics, _ = evaluate(eval_cfg)
    for k, v in report["metrics"].items():
        if v is not None:
            assert eval_metrics[k] == pytest.approx(v, abs=1e-6), k
    # scores.csv: one row per test frame, its video key, label and probability; AUC from it = test/auc
    with (Path(cfg.paths.output_dir) / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and len({r["video"] for r in rows}) == 4
    y, p = [int(r["label"]) for r in rows], [float(r["prob"]) for r in rows]
    assert roc_auc_score(y, p) == pytest.approx(report["metrics"]["test/auc"], abs=1e-5)


def test_stage2_initialises_from_stage1(make_cfg, tmp_path: Path) -> None:
    cfg1 = make_cfg(
        "train", ["experiment=mat_ffpp_c23_stage1", *SMALL_FACES, "model.net.backbone=tf_efficientnet_b0"]
    )
    stage1 = build_module(cfg1.model, cfg1.loss, cfg1.augmentation)
    assert stage1.net.mode == "baseline"
    with torch.no_grad():
        for p in stage1.net.parameters():
            p.add_(0.01)
    ckpt = {"state_dict": stage1.state_dict()}
    stage1.on_save_checkpoint(ckpt)
    path = tmp_path / "stage1.ckpt"
    torch.save(ckpt, path)
    cfg2 = make_cfg("train", [*TINY, f"model.init_from={path}"])
    stage2 = build_module(cfg2.model, cfg2.loss, cfg2.augmentation)
    s1, s2 = stage1.net.state_dict(), stage2.net.state_dict()
    shared = [k for k in s1 if k in s2 and s1[k].shape == s2[k].shape]
    assert any(k.startswith("backbone.") for k in shared)
    assert all(torch.equal(s1[k], s2[k]) for k in shared)
    # a stage-2 checkpoint loads without its stage-1 file
    ckpt2 = {"state_dict": stage2.state_dict()}
    stage2.on_save_checkpoint(ckpt2)
    torch.save(ckpt2, tmp_path / "stage2.ckpt")
    path.unlink()
    reloaded = load_module(tmp_path / "stage2.ckpt", kind="faces")
    assert all(torch.equal(v, s2[k]) for k, v in reloaded.net.state_dict().items())
    OmegaConf.update(cfg2, "model.init_from", None)
    untouched = build_module(cfg2.model, cfg2.loss, cfg2.augmentation).net.state_dict()
    assert not all(torch.equal(untouched[k], s2[k]) for k in shared)
