"""metrics.json of forgery-eval / forgery-train: protocol card, extra block, bootstrap intervals, native-size
padding left out of the metrics, the validation-tuned face threshold carried through the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgery.cli.eval import evaluate
from forgery.cli.train import train
from forgery.data.splicing.dataset import SplicingDataset
from forgery.metrics import LocalizationMetrics
from forgery.modules import load_module
from tests.conftest import SMALL_FACES
from tests.test_entrypoints import tiny_ckpt  # noqa: F401  (fixture)

EXTRA = "metrics.extra=[best_threshold_f1,permuted_f1,border_f1]"


def _write(root: Path, name: str, h: int, w: int, tampered: bool) -> str:
    rng = np.random.default_rng(h * w)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{name}.png")
    if not tampered:
        return f"{name}.png,\n"
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[h // 4 : h - 2, w // 3 :] = 255  # reaches the right edge, next to the padding
    Image.fromarray(mask).save(root / f"{name}_gt.png")
    return f"{name}.png,{name}_gt.png\n"


def _assert_intervals(report: dict) -> None:
    values = {**report["metrics"], **report["extra"]}
    assert report["intervals"], "no intervals"
    for key, (lo, hi) in report["intervals"].items():
        assert key.startswith("test/") and not key.split("/")[-1].startswith("n_"), key
        if values[key] is not None and lo is not None:
            assert lo - 1e-6 <= values[key] <= hi + 1e-6, key


def test_native_size_eval_writes_card_extra_and_intervals(make_cfg, tiny_ckpt, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "data"
    root.mkdir()
    sizes = [(37, 45, True), (50, 29, True), (21, 40, True), (33, 21, False), (18, 35, False)]
    rows = [_write(root, f"im{i}", h, w, t) for i, (h, w, t) in enumerate(sizes)]
    (root / "index.csv").write_text("image,mask\n" + "".join(rows))
    cfg_overrides = [
        f"ckpt_path={tiny_ckpt}",
        "data=list",
        f"data.root={root}",
        f"data.options.index={root / 'index.csv'}",
        "data.eval_resize=none",
        "data.eval_batch_size=1",
        "data.num_workers=0",
        EXTRA,
        "metrics.border_px=2",
    ]
    cfg = make_cfg("eval", [*cfg_overrides, "metrics.bootstrap.n=200"])
    metrics, objects = evaluate(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())

    # the direct computation: the same network on the padded images, maps cropped back to the native size
    module = load_module(tiny_ckpt).eval()
    ref_metric = LocalizationMetrics(extra=["best_threshold_f1", "permuted_f1", "border_f1"], border_px=2)
    padded = LocalizationMetrics()  # what counting the padding as authentic would give
    records = objects["datamodule"].records["test"]
    for rec in records:
        h, w = np.asarray(Image.open(rec.image)).shape[:2]
        sample = SplicingDataset([rec], resize="none")[0]
        assert sample["image"].shape[-2:] == (-(-h // 16) * 16, -(-w // 16) * 16)
        with torch.no_grad():
            prob = module(sample["image"][None]).mask_prob
        ref_metric.update(prob[:, :h, :w], sample["mask"][:, :h, :w])
        padded.update(prob, sample["mask"])
    ref = {f"test/{k}": float(v) for k, v in ref_metric.compute().items()}
    assert report["metrics"]["test/n_images"] == 5 and report["metrics"]["test/n_tampered"] == 3
    for key, value in ref.items():
        block = report["extra"] if "/extra/" in key else report["metrics"]
        assert block[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    assert not any("/extra/" in k for k in report["metrics"])
    wrong = padded.compute()
    # counting the padding as authentic pixels moves the global MCC by far more than the 1e-6 allowed above
    # (how far depends on the tiny checkpoint's weights: 7e-4 to a few 1e-3 seen)
    assert abs(float(wrong["pixel_mcc_global"]) - report["metrics"]["test/pixel_mcc_global"]) > 1e-4
    assert set(report["extra"]) == {
        "test/extra/best_threshold_f1",
        "test/extra/permuted_f1",
        "test/extra/border_f1",
        "test/extra/n_border_f1_skipped",
    }
    _assert_intervals(report)
    assert "test/pixel_f1" in report["intervals"] and "test/extra/border_f1" in report["intervals"]
    assert report["bootstrap"] == {
        "n": 200,
        "seed": 0,
        "level": 0.95,
        "method": "percentile",
        "unit": "image",
        "pixel_auroc_global_hist_bins": 100,
    }
    card = report["protocol"]
    assert card["task"] == "splicing" and card["threshold"]["value"] == 0.5
    assert (card["resize"], card["image_size"], card["border_px"]) == ("none", 384, 2)
    assert card["extra"] == ["best_threshold_f1", "permuted_f1", "border_f1"]
    assert card["checkpoint_selection"] is None  # this checkpoint was not written by forgery-train
    assert card["split_sha256"] == {"test": report["splits"]["test"]["sha256"]}
    assert card["perturbation"] == report["perturbation"] and card["perturbation"]["name"] == "none"
    assert card["version"] and set(card["git"]) == {"commit", "dirty"}
    # a perturbed evaluation says so in its card
    jpeg = make_cfg("eval", [*cfg_overrides, "perturb=jpeg", "perturb.level=70", "metrics.bootstrap.n=0"])
    evaluate(jpeg)
    jpeg_report = json.loads((Path(jpeg.paths.output_dir) / "metrics.json").read_text())
    assert jpeg_report["protocol"]["perturbation"]["name"] == "jpeg"
    assert jpeg_report["protocol"]["perturbation"]["level"] == 70


def test_faces_train_carries_validation_threshold_to_test(make_cfg) -> None:
    cfg = make_cfg(
        "train",
        [
            "experiment=mat_synth",
            *SMALL_FACES,
            "model.net.backbone=tf_efficientnet_b0",
            "trainer.precision=32-true",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "metrics.bootstrap.n=100",
        ],
    )
    train(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    m = report["metrics"]
    for key in ("acc_valthr", "video_acc_valthr", "valthr", "video_valthr", "ece", "video_ece"):
        assert f"test/{key}" in m, key
    ckpt = torch.load(report["checkpoint"], weights_only=True)
    tuned = ckpt["state_dict"]["val_thresholds"]
    assert torch.isfinite(tuned).all() and 0.0 <= tuned.min() <= tuned.max() <= 1.0
    assert m["test/valthr"] == pytest.approx(float(tuned[0]), abs=1e-6)
    assert m["test/video_valthr"] == pytest.approx(float(tuned[1]), abs=1e-6)
    card = report["protocol"]
    assert card["val_thresholds"]["frame"] == pytest.approx(float(tuned[0]))
    assert card["video_aggregation"]["rule"] == "mean"
    assert card["split_sha256"] == {s: v["sha256"] for s, v in report["splits"].items()}
    assert set(card["split_sha256"]) == {"train", "val", "test"}
    assert card["checkpoint_selection"] == {"monitor": "val/auc", "mode": "max", "split": "val"}
    assert report["bootstrap"]["unit"] == "video" and report["bootstrap"]["n"] == 100
    _assert_intervals(report)
    assert "test/video_auc" in report["intervals"] and "test/video_acc_valthr" in report["intervals"]
    # the selection travels in the checkpoint: forgery-eval's card names it too
    eval_cfg = make_cfg("eval", [f"ckpt_path={report['checkpoint']}", *SMALL_FACES, "metrics.bootstrap.n=0"])
    evaluate(eval_cfg)
    again = json.loads((Path(eval_cfg.paths.output_dir) / "metrics.json").read_text())
    assert again["protocol"]["checkpoint_selection"]["monitor"] == "val/auc"
    assert again["intervals"] == {} and again["bootstrap"] is None
    assert again["metrics"]["test/video_acc_valthr"] == pytest.approx(m["test/video_acc_valthr"], abs=1e-6)


def test_test_loop_hands_freed_memory_back_every_release_every_batches(make_cfg, monkeypatch) -> None:
    import forgery.modules.base as base
    from forgery.modules import build_module

    calls: list[bool] = []
    monkeypatch.setattr(base, "release_free_memory", lambda collect=True: calls.append(collect) or True)
    cfg = make_cfg("train", ["model.net.width=4"])
    module = build_module(cfg.model, cfg.loss, None).eval()
    assert module.release_every == 50
    module.release_every = 2
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:16, 8:16] = 1
    batch = {"image": torch.rand(2, 3, 32, 32), "mask": mask, "mask_edge": mask[:, 0].long()}
    batch["image_edge"] = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for i in range(5):
            module.test_step(batch, i)
    assert calls == [False, False]  # after batches 2 and 4, without a garbage collection
    module.log_stage_metrics("test")
    assert calls == [False, False, True]  # once more before the metrics, with one
    assert module.test_intervals["test/pixel_f1"][0] is not None
