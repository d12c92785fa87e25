"""Packaging: the wheel carries every package and the config tree, and its console scripts work alone."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package() -> None:
    """pyproject lists packages explicitly (to map conf/ into the wheel): a new package must be listed."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.relative_to(REPO).parts)
        for p in (REPO / "forgery").rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
    } | {"forgery"}
    assert listed == found | {"forgery.conf"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout (a build leaves build/ and egg-info in its source)."""
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    top = {".git", ".venv", "logs", "data", "build", "dist", "outputs", "multirun", "wandb"}

    def skip(folder: str, names: list[str]) -> set[str]:
        at_top = Path(folder) == REPO
        return {n for n in names if (at_top and n in top) or n == "__pycache__" or n.endswith(".egg-info")}

    shutil.copytree(REPO, src, ignore=skip)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(src),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = out.glob("forgery-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_configs_and_typing_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        p.relative_to(REPO).as_posix() for p in (REPO / "conf").rglob("*.yaml") if "local" not in p.parts
    }
    assert {"forgery/" + c for c in configs} <= names
    assert "forgery/py.typed" in names and "forgery/cli/train.py" in names
    assert not any(n.startswith("conf/") for n in names)  # no top-level 'conf' package


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv (its dependencies borrowed from this one, the checkout not on sys.path) installs the
    wheel; ``forgery-train debug=fdr`` then runs from a temporary folder with the wheel's configs."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the dependencies (torch, lightning, ...) of this environment, after the new venv's own packages
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    res = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "disabled"}
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import json, forgery, forgery.cli as c; print(json.dumps([forgery.__file__, c.config_dir()]))",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    module_file, conf = json.loads(where.stdout)
    assert Path(module_file).is_relative_to(purelib) and Path(conf) == Path(purelib) / "forgery" / "conf"
    res = subprocess.run(
        [
            str(venv / "bin" / "forgery-train"),
            "debug=fdr",
            "data.image_size=32",
            "data.synth.n_train=8",
            "data.synth.n_val=4",
            "data.synth.n_test=4",
            "data.batch_size=4",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    (run,) = (work / "logs/debug/runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["dataset"] == "splicing_synth"
