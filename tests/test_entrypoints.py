"""forgery-eval on the real CASIA v1/v2 and NIST16 samples, forgery-predict on a folder, checkpoint safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgery.cli.eval import evaluate
from forgery.cli.predict import predict_images
from forgery.modules import CheckpointError, build_module, load_module
from tests.conftest import real_data

SMALL_EVAL = ["data.image_size=64", "data.eval_batch_size=4", "data.num_workers=0"]


@pytest.fixture
def tiny_ckpt(make_cfg, tmp_path: Path) -> Path:
    """A splicing checkpoint as forgery-train writes it (untrained weights, config embedded)."""
    cfg = make_cfg("train", ["model.net.width=8"])
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    path = tmp_path / "tiny.ckpt"
    torch.save(ckpt, path)
    return path


def test_checkpoint_roundtrip_weights_only(tiny_ckpt: Path) -> None:
    module = load_module(tiny_ckpt, kind="splicing")
    ref = torch.load(tiny_ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(v, ref[k]) for k, v in module.state_dict().items())
    assert module.net.width == 8


def test_checkpoint_errors(tiny_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="needs a 'faces' model"):
        load_module(tiny_ckpt, kind="faces")
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_module(pickled)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a forgery checkpoint"):
        load_module(foreign)


@pytest.mark.parametrize(
    ("name", "sub", "extra", "n_tampered"),
    [
        ("casia1", "splicing/casia1_dev", [], 40),
        ("casia2", "splicing/casia2", [], 17),
    ],
)
def test_eval_on_real_samples(make_cfg, tiny_ckpt, name, sub, extra, n_tampered) -> None:
    root = real_data(sub)
    cfg = make_cfg(
        "eval", [f"ckpt_path={tiny_ckpt}", f"data={name}", f"data.root={root}", *SMALL_EVAL, *extra]
    )
    metrics, objects = evaluate(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    records = objects["datamodule"].records["test"]
    assert report["dataset"] == name and report["size"] == len(records)
    assert sum(r.label for r in records) == n_tampered
    for key in ("pixel_f1", "pixel_iou", "pixel_mcc", "pixel_auroc", "pixel_f1_global", "image_auroc"):
        assert f"test/{key}" in report["metrics"]
    assert report["metrics"]["test/n_tampered"] == n_tampered


def test_eval_nist16_via_index(make_cfg, tiny_ckpt, tmp_path: Path) -> None:
    root = real_data("splicing/nist16_sample")
    index = tmp_path / "nist16_index.csv"
    index.write_text("image,mask\nimgs/NC2016_2564.jpg,refs/NC2016_2564_gt.png\n")
    cfg = make_cfg(
        "eval",
        [
            f"ckpt_path={tiny_ckpt}",
            "data=nist16",
            f"data.root={root}",
            f"data.options.index={index}",
            "data.options.mask_rule=lum127",
            *SMALL_EVAL,
        ],
    )
    metrics, _ = evaluate(cfg)
    assert metrics["test/n_images"] == 1 and metrics["test/n_tampered"] == 1


def test_predict_folder_writes_masks_and_scores(tiny_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "images"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (33, 20, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg")
    module = load_module(tiny_ckpt, kind="splicing")
    out = tmp_path / "out"
    paths = sorted(src.rglob("*.*"))
    scores = predict_images(module, paths, out, threshold=0.5, max_size=32)
    assert set(scores) == {str(p) for p in paths}
    for stem, (h, w) in (("a", (40, 56)), ("sub__b", (33, 20))):
        prob = np.asarray(Image.open(out / f"{stem}_prob.png"))
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        over = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert prob.shape == (h, w) and mask.shape == (h, w) and over.shape == (h, w, 3)
        assert set(np.unique(mask)) <= {0, 255}
        score = scores[str(src / (stem.replace("__", "/") + (".png" if stem == "a" else ".jpg")))]["score"]
        assert score == pytest.approx(prob.max() / 255, abs=1 / 255 + 1e-6)
