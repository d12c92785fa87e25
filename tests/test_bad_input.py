"""Bad input: a clear error naming the file (data.on_error=raise) or a counted skip (data.on_error=skip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgery.cli.eval import evaluate
from forgery.data.splicing import DataError
from forgery.data.splicing.datamodule import SplicingDataModule
from tests.test_entrypoints import tiny_ckpt  # noqa: F401  (fixture)


def _folder(root: Path) -> Path:
    """Tp/Gt layout: 3 good pairs, 3 bad ones (zero-byte image, truncated PNG, mask of another size)."""
    (root / "Tp").mkdir(parents=True)
    (root / "Gt").mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    for name in ("good1", "good2", "good3", "truncated", "wrongsize"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "Tp" / f"{name}.png")
        Image.fromarray(mask).save(root / "Gt" / f"{name}.png")
    (root / "Tp" / "zero.png").write_bytes(b"")
    Image.fromarray(mask).save(root / "Gt" / "zero.png")
    data = (root / "Tp" / "truncated.png").read_bytes()
    (root / "Tp" / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "Gt" / "wrongsize.png")
    return root


def _module(root: Path, on_error: str) -> SplicingDataModule:
    dm = SplicingDataModule(
        name="folder",
        root=str(root),
        image_size=32,
        batch_size=6,
        eval_batch_size=6,
        on_error=on_error,
        split={"val_fraction": 0.0, "test_fraction": 1.0, "seed": 0},
    )
    dm.setup("test")
    return dm


def test_raise_names_the_file(tmp_path: Path) -> None:
    dm = _module(_folder(tmp_path / "ds"), "raise")
    ds = dm.datasets["test"]
    errors = {}
    for i, rec in enumerate(ds.records):
        try:
            ds[i]
        except DataError as err:
            errors[Path(rec.image).stem] = str(err)
    assert sorted(errors) == ["truncated", "wrongsize", "zero"]
    assert "zero.png" in errors["zero"]
    assert "truncated.png" in errors["truncated"]
    assert "wrongsize.png" in errors["wrongsize"] and "32x16" in errors["wrongsize"]


def test_skip_counts_in_metrics_json(make_cfg, tiny_ckpt: Path, tmp_path: Path) -> None:  # noqa: F811
    root = _folder(tmp_path / "ds")
    cfg = make_cfg(
        "eval",
        [
            f"ckpt_path={tiny_ckpt}",
            "data=folder",
            f"data.root={root}",
            "data.image_size=32",
            "data.num_workers=0",
            "data.on_error=skip",
        ],
    )
    metrics, _ = evaluate(cfg)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert report["metrics"]["test/skipped"] == 3
    assert report["metrics"]["test/n_images"] == 3
    cfg_raise = make_cfg(
        "eval",
        [
            f"ckpt_path={tiny_ckpt}",
            "data=folder",
            f"data.root={root}",
            "data.image_size=32",
            "data.num_workers=0",
        ],
    )
    with pytest.raises(DataError, match=r"(zero|truncated|wrongsize)\.png"):
        evaluate(cfg_raise)


def test_nonfinite_loss_raises_with_step_and_ids_or_skips(make_cfg) -> None:
    from forgery.modules import build_module

    cfg = make_cfg("train", ["model.net.width=8"])
    module = build_module(cfg.model, cfg.loss, None)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    images = torch.rand(2, 3, 32, 32)
    images[0, 0, 0, 0] = float("nan")
    batch = {"image": images, "mask": torch.zeros(2, 1, 32, 32), "id": ["a.png", "b.png"]}
    batch = module.on_after_batch_transfer(batch, 0)
    with pytest.raises(FloatingPointError, match=r"global step 0.*\['a.png', 'b.png'\]"):
        module.training_step(batch, 0)
    module.hparams.on_nonfinite = "skip"
    assert module.training_step(batch, 0) is None and module.nonfinite_skipped == 1


def test_forgery_data_check_lists_every_problem(tmp_path: Path) -> None:
    from forgery.data.check import check_datamodule

    root = _folder(tmp_path / "ds")
    dm = SplicingDataModule(name="folder", root=str(root), image_size=32, split={"val_fraction": 0.0})
    report = check_datamodule(dm)
    assert report["splits"] == {"test": 0, "val": 0, "train": 6}
    assert sorted(Path(p["file"]).name for p in report["problems"]) == [
        "truncated.png",
        "wrongsize.png",
        "zero.png",
    ]
    # the command: a table, check.json, exit code 1
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgery.cli.data",
            "check",
            "data=folder",
            f"data.root={root}",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    saved = json.loads((out / "check.json").read_text())
    assert len(saved["problems"]) == 3 and saved["dataset"] == "folder"
    assert "wrongsize.png" in proc.stdout
