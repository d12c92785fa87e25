"""Sweep summaries: one table (csv / md / json) and pictures per multirun, checked on built sweep folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import stats

from forgery.utils.summary import SweepSummary, summarize_sweep, write_summary
from tests.conftest import real_data
from tests.test_cli import run_cli


def _job(
    sweep: Path, num: int, overrides: list[str], metrics: dict | None = None, failed: dict | None = None
) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if failed is not None:
        (job / "failed.json").write_text(json.dumps(failed))
    return job


def _eval_metrics(dataset: str, f1: float, size: int = 10, **extra) -> dict:
    return {
        "dataset": dataset,
        "split": "test",
        "size": size,
        "checkpoint": "/ckpt/best.ckpt",
        "metrics": {"test/pixel_f1": f1, "test/pixel_auroc": 0.5 + f1 / 2, "test/n_tampered": size // 2},
        **extra,
    }


def test_eval_sweep_rows_missing_root_and_files(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["ckpt_path=/ckpt/best.ckpt", "data=casia1"], _eval_metrics("casia1", 0.31, 100))
    _job(
        sweep,
        1,
        ["ckpt_path=/ckpt/best.ckpt", "data=casia2"],
        _eval_metrics("casia2", 0.42, 50, intervals={"test/pixel_f1": [0.38, 0.47]}),
    )
    _job(sweep, 2, ["ckpt_path=/ckpt/best.ckpt", "data=columbia"], failed={"error": "/x: root absent"})
    only_tampered = _eval_metrics("coverage", 0.2, 8)
    only_tampered["metrics"] |= {"test/image_auroc": None}  # NaN in metrics.json: one class only
    _job(sweep, 3, ["ckpt_path=/ckpt/best.ckpt", "data=coverage"], only_tampered)
    written = write_summary(sweep)
    summary = json.loads(written["json"].read_text())
    assert summary["axes"] == ["data"]  # ckpt_path is the same in every job: not an axis
    rows = summary["rows"]
    assert [r["dataset"] for r in rows] == ["casia1", "casia2", None, "coverage"]
    assert [r["images"] for r in rows] == [100, 50, None, 8]
    assert [r["undefined"] for r in rows] == [[], [], [], ["test/image_auroc"]]
    assert rows[1]["test/pixel_f1"] == 0.42 and rows[1]["test/pixel_f1 95% CI"] == [0.38, 0.47]
    assert rows[2]["status"] == "failed: /x: root absent" and rows[2]["data"] == "columbia"
    with written["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and float(table[0]["test/pixel_f1"]) == 0.31
    md = written["md"].read_text()
    assert (
        "Checkpoint: `/ckpt/best.ckpt`" in md and "| 1 | casia2 | casia2 | 50 | 25 | 0.42 [0.38, 0.47]" in md
    )
    assert "failed: /x: root absent" in md
    # undefined (computed, NaN) is n/a and explained; absent (casia1 has no image AUC column) stays blank
    assert "| 3 | coverage | coverage | 8 | 4 | 0.2 | 0.6 | n/a | ok |" in md
    assert (
        "n/a: undefined on that data" in md
        and "| 0 | casia1 | casia1 | 100 | 50 | 0.31 | 0.655 |  | ok |" in md
    )
    image = Image.open(written["heatmap"])
    assert image.size[0] > 200 and image.size[1] > 100


def test_seed_sweep_mean_std_and_t_interval(tmp_path: Path) -> None:
    sweep = tmp_path / "seeds"
    values = [0.30, 0.34, 0.29]
    for i, v in enumerate(values):
        metrics = _eval_metrics("splicing_synth", v) | {"val_metrics": {"val/pixel_f1": v + 0.1}}
        _job(sweep, i, ["experiment=mtse_synth", f"seed={i + 1}"], metrics)
    summary = summarize_sweep(sweep)
    (group,) = summary["seeds"]
    assert group["seeds"] == ["1", "2", "3"] and group["n"] == 3
    st = group["stats"]["test/pixel_f1"]
    mean, std = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 2) * std / np.sqrt(3)
    assert st["mean"] == pytest.approx(mean) and st["std"] == pytest.approx(std)
    assert st["ci95"] == pytest.approx([mean - half, mean + half])
    assert group["stats"]["val/pixel_f1"]["mean"] == pytest.approx(mean + 0.1)  # training sweeps: val too
    assert "## Seeds 1, 2, 3" in write_summary(sweep)["md"].read_text()


def test_robustness_sweep_draws_metric_vs_level(tmp_path: Path) -> None:
    sweep = tmp_path / "jpeg"
    for i, (level, f1) in enumerate([(100, 0.4), (90, 0.35), (70, 0.3), (50, 0.2)]):
        metrics = _eval_metrics("casia1", f1, perturbation={"name": "jpeg", "level": level})
        _job(sweep, i, ["perturb=jpeg", f"perturb.level={level}"], metrics)
    written = write_summary(sweep)
    assert "robustness_jpeg" in written and written["robustness_jpeg"].name == "summary_jpeg.png"
    assert Image.open(written["robustness_jpeg"]).size[0] > 200
    rows = summarize_sweep(sweep)["rows"]
    assert [(r["perturb.level"], r["test/pixel_f1"]) for r in rows] == [
        ("100", 0.4),
        ("90", 0.35),
        ("70", 0.3),
        ("50", 0.2),
    ]


def test_face_eval_sweep_draws_roc_and_pr_and_per_method_rows(tmp_path: Path) -> None:
    sweep = tmp_path / "faces"
    job = _job(
        sweep,
        0,
        ["data=ffpp"],
        {
            "dataset": "ffpp",
            "size": 8,
            "metrics": {"test/auc": 0.75, "test/video_auc": 0.8},
            "per_method": {
                "Deepfakes": {"auc": 0.9, "video_auc": None, "n_frames": 6},
                "FaceSwap": {"auc": 0.6, "video_auc": 0.7, "n_frames": 6},
            },
        },
    )
    rng = np.random.default_rng(0)
    with (job / "scores.csv").open("w") as f:
        f.write("video,label,prob\n")
        for v in range(8):
            for _ in range(3):
                f.write(f"v{v},{v % 2},{rng.random():.4f}\n")
    written = write_summary(sweep)
    assert Image.open(written["roc_pr"]).size[0] > 400
    rows = summarize_sweep(sweep)["rows"]
    assert [r["dataset"] for r in rows] == ["ffpp", "ffpp/Deepfakes", "ffpp/FaceSwap"]
    assert rows[1]["test/auc"] == 0.9 and rows[2]["images"] == 6
    assert [r["undefined"] for r in rows] == [[], ["test/video_auc"], []]
    assert "| 0 | ffpp/Deepfakes | 6 |  | 0.9 | n/a |" in written["md"].read_text()


def test_callback_writes_after_the_last_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from omegaconf import OmegaConf

    sweep = tmp_path / "cb"
    _job(sweep, 0, ["data=casia1"], _eval_metrics("casia1", 0.3))
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": {}}))
    assert (sweep / "summary.md").is_file() and "sweep summary:" in capsys.readouterr().out


def test_eval_over_datasets_one_command(tmp_path: Path) -> None:
    """`forgery-eval -m ckpt_path=... data=casia1,columbia` with data under paths.data_dir: a CASIA v1 row
    with numbers and a Columbia row saying its root is missing."""
    casia1 = real_data("splicing/casia1_dev")
    data_dir = tmp_path / "datasets"
    data_dir.mkdir()
    (data_dir / "CASIA1").symlink_to(casia1)
    ckpt = _tiny_checkpoint(tmp_path)
    res = run_cli(
        "forgery-eval",
        "-m",
        f"ckpt_path={ckpt}",
        "data=casia1,columbia",
        f"paths.data_dir={data_dir}",
        "data.image_size=32",
        "data.num_workers=0",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs/eval/multiruns").iterdir()
    assert f"sweep summary: {sweep / 'summary.md'}" in res.stdout
    rows = json.loads((sweep / "summary.json").read_text())["rows"]
    assert rows[0]["dataset"] == "casia1" and rows[0]["images"] == 128 and rows[0]["test/n_tampered"] == 40
    assert 0.0 <= rows[0]["test/pixel_f1"] <= 1.0
    assert rows[1]["status"].startswith("failed: ") and "Columbia" in rows[1]["status"]
    assert (sweep / "summary_heatmap.png").is_file()


def _tiny_checkpoint(tmp_path: Path) -> Path:
    """An untrained width-8 MTSE-Net checkpoint as forgery-train writes it."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from forgery.modules import build_module
    from tests.conftest import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model.net.width=8"])
    GlobalHydra.instance().clear()
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.build_config["data"] = {"name": "splicing_synth", "image_size": 32}
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    path = tmp_path / "tiny.ckpt"
    torch.save(ckpt, path)
    return path
