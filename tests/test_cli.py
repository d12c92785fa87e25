"""Every console script as a user runs it: a subprocess started from a temporary folder outside the checkout.

The in-process tests call ``train`` / ``evaluate`` directly; these run the installed ``forgery-*`` scripts
(what the README prints) and check the files they write, their exit codes and what they print.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SMALL_FACES
from tests.test_faces_data import _face_frames, _write_video

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
TINY_SPLICING = [
    "data.image_size=32",
    "data.synth.n_train=8",
    "data.synth.n_val=4",
    "data.synth.n_test=4",
    "data.batch_size=4",
    "data.eval_batch_size=4",
]


def run_cli(
    script: str,
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: int = 420,
    env_update: dict[str, str | None] | None = None,
) -> subprocess.CompletedProcess:
    """Runs ``BIN/<script> args`` in ``cwd`` with W&B disabled and no PYTHONPATH (the installed package);
    ``env_update`` sets (or, with None, removes) further variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env |= {
        "WANDB_MODE": "disabled",
        "FORGERY_QUIET": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"),
    }
    for key, value in (env_update or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    exe = BIN / script
    if not exe.is_file():
        pytest.fail(f"console script {exe} is not installed (pip install -e .)")
    res = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert res.returncode == 0, (
            f"{script} {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def run_dir(res: subprocess.CompletedProcess, prog: str) -> Path:
    """The run directory an app reports on its last line (``<prog>: outputs in <dir>``)."""
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(f"{prog}: outputs in ")]
    assert lines, f"{prog} did not say where its outputs went:\n{res.stdout[-2000:]}"
    return Path(lines[-1].split(" outputs in ", 1)[1])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the checkout that every command runs from."""
    path = tmp_path_factory.mktemp("user")
    assert REPO not in path.parents
    return path


@pytest.fixture(scope="module")
def splicing_run(work: Path) -> Path:
    """``forgery-train experiment=mtse_synth debug=smoke`` (tiny data): its run directory."""
    res = run_cli("forgery-train", "experiment=mtse_synth", "debug=smoke", *TINY_SPLICING, cwd=work)
    return run_dir(res, "forgery-train")


def test_train_writes_a_complete_run_directory(splicing_run: Path, work: Path) -> None:
    assert splicing_run.is_relative_to(work / "logs")
    assert (splicing_run / "checkpoints/last.ckpt").is_file()
    metrics = json.loads((splicing_run / "metrics.json").read_text())
    assert metrics["dataset"] == "splicing_synth" and metrics["size"] == 4
    assert 0.0 <= metrics["metrics"]["test/pixel_f1"] <= 1.0
    rows = list(csv.DictReader((splicing_run / "csv/version_0/metrics.csv").open()))
    assert any(r.get("val/pixel_f1") for r in rows)
    assert (splicing_run / ".hydra/config.yaml").is_file()
    assert (work / "data/splicing_synth").is_dir()  # data cache under the working folder


def test_eval_defaults_to_the_trained_size_and_says_when_overridden(splicing_run: Path, work: Path) -> None:
    ckpt = splicing_run / "checkpoints/last.ckpt"
    res = run_cli("forgery-eval", f"ckpt_path={ckpt}", *TINY_SPLICING[1:], cwd=work)
    out = run_dir(res, "forgery-eval")
    assert json.loads((out / "metrics.json").read_text())["size"] == 4
    log = (out / "eval.log").read_text()
    assert "the size the model was trained at" in log and "image_size=32" in log
    res = run_cli("forgery-eval", f"ckpt_path={ckpt}", "data.image_size=64", *TINY_SPLICING[1:], cwd=work)
    assert "the model was trained at 32" in (run_dir(res, "forgery-eval") / "eval.log").read_text()


def test_predict_writes_maps_and_explains_scores(splicing_run: Path, work: Path) -> None:
    folder = work / "images"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (40, 56)), ("b.jpg", (33, 47))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    res = run_cli(
        "forgery-predict", f"ckpt_path={splicing_run / 'checkpoints/last.ckpt'}", f"input={folder}", cwd=work
    )
    out = run_dir(res, "forgery-predict")
    payload = json.loads((out / "predictions.json").read_text())
    assert (
        payload["image_size"] == 32
        and "maximum of the tampered-probability map" in payload["fields"]["score"]
    )
    assert {Path(k).name for k in payload["images"]} == {"a.png", "b.jpg"}
    for stem, (h, w) in (("a", (40, 56)), ("b", (33, 47))):
        for kind in ("prob", "mask", "overlay"):
            assert Image.open(out / f"{stem}_{kind}.png").size == (w, h)


def test_data_check_on_a_list_with_and_without_root(work: Path) -> None:
    root = work / "listdata"
    (root / "img").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "img/t.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "img/t_gt.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "img/au.png")
    (root / "list.csv").write_text("image,mask\nimg/t.png,img/t_gt.png\nimg/au.png,\n")
    for extra in ([], [f"data.root={root}"]):
        res = run_cli(
            "forgery-data", "check", "data=list", f"data.options.index={root / 'list.csv'}", *extra, cwd=work
        )
        assert "no problems" in res.stdout
        report_line = [ln for ln in res.stdout.splitlines() if "report written to" in ln][-1]
        report = json.loads(Path(report_line.rsplit(" ", 1)[1]).read_text())
        assert sum(report["splits"].values()) == 2 and report["problems"] == []
    (root / "list.csv").write_text("image,mask\nimg/t.png,img/t_gt.png\nimg/au.png,\nimg/gone.png,\n")
    res = run_cli(
        "forgery-data", "check", "data=list", f"data.options.index={root / 'list.csv'}", cwd=work, check=False
    )
    assert res.returncode != 0 and "gone.png" in res.stdout + res.stderr


def test_faces_extracts_a_tiny_video(work: Path) -> None:
    """An FF++ layout holding one of its split's videos: crops of it, the others counted as missing."""
    import cv2

    root = work / "ffpp"
    videos = root / "original_sequences/youtube/c23/videos"
    videos.mkdir(parents=True, exist_ok=True)
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits/test.json").write_text('[["000", "001"]]')
    writer = cv2.VideoWriter(str(videos / "000.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for frame in _face_frames(12):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    res = run_cli(
        "forgery-faces",
        "data_name=ffpp",
        f"root={root}",
        "split=test",
        f"out_dir={work / 'crops'}",
        "frames_per_video=3",
        "stride=2",
        "size=40",
        "workers=1",
        "progress=false",
        cwd=work,
    )
    assert f"face crops, index.csv and report.json in {work / 'crops'}" in res.stdout
    rows = list(csv.DictReader((work / "crops/index.csv").open()))
    assert len(rows) == 3 and {(r["split"], r["label"]) for r in rows} == {("test", "0")}
    report = json.loads((work / "crops/report.json").read_text())["ffpp/test"]
    assert report["missing"]["count"] == 9  # 001, and 000_001 + 001_000 of the 4 default methods


@pytest.mark.parametrize(
    "script",
    ["forgery-train", "forgery-eval", "forgery-predict", "forgery-faces", "forgery-convert", "forgery-bench"],
)
def test_help_names_the_task_and_main_options(script: str, work: Path) -> None:
    res = run_cli(script, "--help", cwd=work)
    assert res.stdout.startswith(f"{script}: ") and "Main options:" in res.stdout
    if script in ("forgery-train", "forgery-eval", "forgery-bench"):
        assert "== Config groups (group=option) ==" in res.stdout
    else:  # no training config group applies: the app's options, and where every option is
        assert "--cfg job" in res.stdout and "Config groups" not in res.stdout
    if script == "forgery-faces":
        assert "track=false|true" in res.stdout and "shard=i num_shards=n" in res.stdout


def test_data_help_lists_commands(work: Path) -> None:
    assert "check" in run_cli("forgery-data", "--help", cwd=work).stdout
    assert run_cli("forgery-data", "check", "--help", cwd=work).stdout.startswith("forgery-data check: ")
    # no command before the flags: the default command (check), said on stderr
    flags_first = run_cli("forgery-data", "--cfg", "job", cwd=work)
    assert "task_name: check" in flags_first.stdout
    assert "no command given; running forgery-data check --cfg job" in flags_first.stderr
    assert "task_name: check" in run_cli("forgery-data", "check", "--cfg", "job", cwd=work).stdout


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    """The README's `forgery-train ... --cfg job`: the job config, nothing run, nothing written."""
    assert REPO not in tmp_path.parents
    res = run_cli("forgery-train", "--cfg", "job", "model.optimizer.lr=0.123", cwd=tmp_path)
    assert "task_name: train" in res.stdout and "lr: 0.123" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_apps_import_without_torch() -> None:
    """`--help` and `--cfg job` only compose a config: importing an app must not load torch or Lightning
    (they cost seconds; the apps import them when they run)."""
    apps = ["train", "eval", "predict", "faces", "data", "audit", "convert", "bench"]
    heavy = ("torch", "lightning", "timm", "torchmetrics", "kornia")
    code = "import sys\n" + "".join(f"import forgery.cli.{a}\n" for a in apps)
    code += f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("forgery-train", ["model=nosuch"], "Could not find 'model/nosuch'"),
        ("forgery-train", ["trainer.max_epoch=1"], "trainer.max_epoch"),
        ("forgery-eval", [], "missing required value: ckpt_path"),
        ("forgery-eval", ["ckpt_path=/nonexistent/x.ckpt"], "checkpoint not found: /nonexistent/x.ckpt"),
        ("forgery-eval", ["ckpt_path="], "no checkpoint given: ckpt_path is empty"),
        ("forgery-eval", ["ckpt_path=/"], "/: a folder, not a checkpoint file"),
        (
            "forgery-train",
            ["data=casia2", "data.root=/nonexistent", "debug=fdr"],
            "/nonexistent: dataset root",
        ),
        ("forgery-train", ["model=mat", "debug=fdr"], "these go together"),
        ("forgery-predict", ["ckpt_path=/nonexistent/x.ckpt"], "missing required value: input"),
        ("forgery-faces", ["root=/nonexistent"], "/nonexistent: video root"),
        ("forgery-faces", ["root=/", "workers=many"], "workers must be a whole number of processes or auto"),
        ("forgery-data", ["nosuch"], "unknown command 'nosuch'"),
        # an option a _target_ rejects while Hydra instantiates it (Hydra wraps the error)
        ("forgery-train", ["debug=fdr", "model.eval_tile=500"], "tile must be a positive multiple of 16"),
        ("forgery-train", ["debug=fdr", "metrics.bootstrap.level=2"], "bootstrap.level must be in (0, 1)"),
    ],
)
def test_mistakes_give_one_clear_line(script: str, args: list[str], message: str, work: Path) -> None:
    res = run_cli(script, *args, cwd=work, check=False)
    assert res.returncode != 0
    assert message in res.stderr + res.stdout
    assert "Traceback" not in res.stderr + res.stdout


def test_wrong_checkpoint_kind_is_one_line(splicing_run: Path, work: Path) -> None:
    res = run_cli(
        "forgery-eval",
        f"ckpt_path={splicing_run / 'checkpoints/last.ckpt'}",
        *SMALL_FACES,
        cwd=work,
        check=False,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "is a checkpoint of a 'splicing' model" in res.stderr and "'faces' data" in res.stderr


@pytest.mark.slow
def test_a_user_without_a_wandb_account_gets_an_offline_run_in_the_run_directory(
    work: Path, tmp_path: Path
) -> None:
    """No WANDB_MODE, no API key, no ~/.netrc: W&B logs offline into the run directory, next to the CSV."""
    home = tmp_path / "home"
    home.mkdir()
    no_account = {"WANDB_MODE": None, "WANDB_API_KEY": None, "NETRC": None, "HOME": str(home)}
    res = run_cli(
        "forgery-train",
        "experiment=mtse_synth",
        "debug=smoke",
        "logger=default",
        *TINY_SPLICING,
        cwd=work,
        env_update=no_account | {"WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(home)},
    )
    out = res.stdout + res.stderr
    assert "W&B: no credentials and WANDB_MODE unset; logging offline to the run directory" in out
    assert "anonymous" not in out.lower()  # Lightning's anonymous=None, which W&B warns about, is not passed
    run = run_dir(res, "forgery-train")
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb")), sorted((run / "wandb").rglob("*"))
    assert (run / "csv" / "version_0" / "metrics.csv").is_file() and (run / "checkpoints/last.ckpt").is_file()


def test_a_run_folder_as_checkpoint_points_at_its_last_ckpt(splicing_run: Path) -> None:
    from forgery.modules.base import load_module

    with pytest.raises(FileNotFoundError, match="a folder, not a checkpoint file; did you mean") as err:
        load_module(splicing_run)
    assert str(splicing_run / "checkpoints" / "last.ckpt") in str(err.value)


def test_full_error_shows_the_traceback(work: Path) -> None:
    env_run = subprocess.run(
        [str(BIN / "forgery-eval"), "ckpt_path=/nonexistent/x.ckpt"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HYDRA_FULL_ERROR": "1"},
    )
    assert env_run.returncode != 0 and "Traceback" in env_run.stderr


def test_readme_sweep_line_writes_two_runs(work: Path) -> None:
    """The README's sweep line (`forgery-train -m experiment=mtse_synth debug=fdr model.optimizer.lr=...`)."""
    res = run_cli(
        "forgery-train",
        "-m",
        "experiment=mtse_synth",
        "debug=fdr",
        "model.optimizer.lr=1e-3,3e-4",
        *TINY_SPLICING,
        cwd=work,
    )
    sweep = run_dir(res, "forgery-train").parent
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    lrs = [(sweep / n / ".hydra/overrides.yaml").read_text().count("model.optimizer.lr=") for n in ("0", "1")]
    assert lrs == [1, 1] and (sweep / "multirun.yaml").is_file()
    rows = json.loads((sweep / "summary.json").read_text())["rows"]  # the sweep's table: overrides -> metrics
    assert [float(r["model.optimizer.lr"]) for r in rows] == [1e-3, 3e-4]
    assert all(r["val/pixel_f1"] is not None and r["test/pixel_f1"] is not None for r in rows)


@pytest.mark.slow
def test_mat_smoke_checkpoint_then_video_prediction(work: Path) -> None:
    """The README's quick MAT checkpoint, then forgery-predict on a video: scores, crops, attention."""
    res = run_cli("forgery-train", "experiment=mat_synth", "debug=smoke", *SMALL_FACES, cwd=work)
    ckpt = run_dir(res, "forgery-train") / "checkpoints/last.ckpt"
    assert ckpt.is_file()
    video = _write_video(work / "clip.avi", _face_frames(12))
    res = run_cli(
        "forgery-predict", f"ckpt_path={ckpt}", f"input={video}", "faces.frames=3", "faces.stride=3", cwd=work
    )
    out = run_dir(res, "forgery-predict")
    entry = json.loads((out / "predictions.json").read_text())["inputs"][str(video)]
    assert len(entry["frames"]) == 3 and 0.0 <= entry["score"] <= 1.0
    assert len(entry["crops"]) == 3 and all(Image.open(p).size == (64, 64) for p in entry["crops"])
    assert Image.open(entry["attention"]).size[0] > 5 * 64  # face + 4 attention maps per row
