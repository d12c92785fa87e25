"""Beyond one process: Hydra launchers (submitit local / SLURM) and the Optuna sweeps, as users run them."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from tests.conftest import CONFIG_DIR
from tests.test_cli import TINY_SPLICING, run_cli, run_dir


def _compose(overrides: list[str], app: str = "train"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(app, overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def test_slurm_launcher_composes_with_its_keys() -> None:
    """The README's 2 nodes x 8 GPUs line: the job's shape follows the trainer's (Lightning's SLURM
    environment refuses a job whose tasks per node or nodes differ from trainer.devices / num_nodes)."""
    ddp = ["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"]
    cfg = _compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", *ddp])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.gpus_per_node) == ("gpu", 2, 8)
    assert launcher.tasks_per_node == 8  # one Lightning DDP process per GPU
    built = instantiate(launcher)  # as Hydra builds it: the interpolations resolve against the job's config
    assert [built.params[k] for k in ("nodes", "gpus_per_node", "tasks_per_node")] == [2, 8, 8]
    # one trial of a sweep on the default trainer (e.g. hparams_search=mtse_optuna): one GPU, one task
    one = _compose(["hydra/launcher=slurm", "hparams_search=mtse_optuna"]).hydra.launcher
    assert (one.nodes, one.gpus_per_node, one.tasks_per_node) == (1, 1, 1)
    explicit = _compose(["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4"]).hydra.launcher
    assert (explicit.gpus_per_node, explicit.tasks_per_node) == (4, 4)
    assert launcher.additional_parameters.requeue is True and launcher.max_num_timeout > 0
    assert launcher.signal_delay_s > 0 and launcher.timeout_min == 1440
    local = _compose(["hydra/launcher=local"]).hydra.launcher
    assert local._target_.endswith("LocalLauncher") and local.gpus_per_node == 0


def test_slurm_cpu_launcher_runs_one_extraction_per_job() -> None:
    """The README's cluster extraction (`forgery-faces -m hydra/launcher=slurm_cpu ... shard=...`): one task
    per job and no GPU (the GPU launcher's 8 tasks would each extract the same shard), the job's CPUs for
    `workers=auto`, requeued on time-out."""
    cfg = _compose(["hydra/launcher=slurm_cpu", "num_shards=64", "shard=3"], app="faces")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (0, 1, 1)
    assert launcher.cpus_per_task == 16 and launcher.additional_parameters.requeue is True
    assert cfg.workers == "auto"


def test_faces_split_all_checks_every_split_before_reading_a_video(tmp_path: Path) -> None:
    """DFDC without its test labels.csv: split=all names the file before extracting train and val."""
    import json

    from forgery.cli.faces import run
    from forgery.data.faces.sources import FaceDataError

    root, out = tmp_path / "dfdc", tmp_path / "out"
    (root / "dfdc_train_part_0").mkdir(parents=True)
    (root / "dfdc_train_part_0/metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "REAL"}}))
    (root / "dfdc_train_part_0/aaa.mp4").write_bytes(b"")
    cfg = _compose(
        ["data_name=dfdc", f"root={root}", "split=all", f"out_dir={out}", "workers=0"], app="faces"
    )
    with pytest.raises(FaceDataError, match="labels.csv: DFDC test labels.csv not found"):
        run(cfg)
    assert not out.exists()  # nothing extracted, no index or report written


def test_faces_refuses_several_tasks_of_one_slurm_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from forgery.cli.faces import cpu_workers, run
    from forgery.errors import ConfigError

    cfg = _compose([f"root={tmp_path}", f"out_dir={tmp_path}/out"], app="faces")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    with pytest.raises(ConfigError, match="this SLURM step has 8: each task would extract the same videos"):
        run(cfg)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert cpu_workers("auto") == len(os.sched_getaffinity(0)) and cpu_workers(None) == cpu_workers("auto")
    assert cpu_workers(0) == 0 and cpu_workers(3) == 3
    for bad in ("many", -1, 2.5, True):
        with pytest.raises(ConfigError, match="workers must be a whole number of processes or auto"):
            cpu_workers(bad)


@pytest.mark.parametrize("name", ["mtse_optuna", "mat_optuna"])
def test_optuna_configs_compose(name: str) -> None:
    extra = ["experiment=mat_synth"] if name == "mat_optuna" else []
    cfg = _compose([f"hparams_search={name}", *extra])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_.endswith("TPESampler")
    assert cfg.optimized_metric == ("val/pixel_f1" if name == "mtse_optuna" else "val/auc")
    assert sweeper.study_name == name and "optuna.db" in sweeper.storage


@pytest.mark.slow
def test_local_submitit_multirun_of_two_jobs(tmp_path: Path) -> None:
    res = run_cli(
        "forgery-train",
        "-m",
        "hydra/launcher=local",
        "experiment=mtse_synth",
        "debug=fdr",
        "model.optimizer.lr=1e-3,3e-4",
        *TINY_SPLICING,
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs/debug/multiruns").iterdir()
    assert "Submitit 'local' sweep" in res.stdout + res.stderr
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file()
    assert (sweep / ".submitit").is_dir()


@pytest.mark.slow
def test_optuna_two_trials_then_resume(tmp_path: Path) -> None:
    args = ["hparams_search=mtse_optuna", "experiment=mtse_synth", "debug=fdr", *TINY_SPLICING]
    res = run_cli("forgery-train", *args, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    sweep = run_dir(res, "forgery-train").parent
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert 0.0 <= float(results["best_value"]) <= 1.0
    assert set(results["best_params"]) == {
        "model.optimizer.lr",
        "loss.mask_edge_weight",
        "loss.image_edge_weight",
    }

    def complete_trials() -> int:
        with sqlite3.connect(sweep / "optuna.db") as db:
            return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]

    assert complete_trials() == 2
    run_cli("forgery-train", *args, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert complete_trials() == 3  # the same study, resumed from its sqlite file


@pytest.mark.slow
def test_sharded_extraction_through_a_launcher_then_merge(tmp_path: Path) -> None:
    """The README's cluster extraction with submitit's local executor standing in for SLURM: a multirun of
    two shards (each its own job, `workers=auto`), then `merge=true`, equals one unsharded run, as typed."""
    from tests.test_faces_data import _frame_folders

    common = [*_frame_folders(tmp_path / "frames"), "progress=false"]
    run_cli("forgery-faces", *common, "out_dir=one", cwd=tmp_path)
    run_cli(
        "forgery-faces",
        "-m",
        "hydra/launcher=local",
        *common,
        "out_dir=two",
        "num_shards=2",
        "shard=range(0,2)",
        cwd=tmp_path,
    )
    assert not (tmp_path / "two/index.csv").exists()  # shards write part files only
    assert len([p for p in (tmp_path / "two/_shards").rglob("*") if p.is_file()]) == 2  # one part per job
    res = run_cli("forgery-faces", "data_name=frames", "out_dir=two", "merge=true", cwd=tmp_path)
    assert "index.csv and report.json in" in res.stdout
    assert (tmp_path / "one/index.csv").read_bytes() == (tmp_path / "two/index.csv").read_bytes()
