"""Shared fixtures: composed configs shrunk for CPU tests, paths to the shared real samples."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from forgery.cli import config_dir
from forgery.utils.resolvers import register_resolvers

CONFIG_DIR = config_dir()
register_resolvers()
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("FORGERY_QUIET", "1")

# ../shared beside the checkout (the nearest ancestor holding one, so a git worktree finds it too)
SHARED = next(
    (p / "shared" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[2] / "shared",
)
REAL_DATA = SHARED / "data" / "real"
FIXTURES = SHARED / "fixtures"
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))

# small, fast data for every test that trains (built once per session)
SMALL_SPLICING = [
    "data.image_size=64",
    "data.synth.n_train=16",
    "data.synth.n_val=8",
    "data.synth.n_test=8",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.num_workers=0",
]
SMALL_FACES = [
    "data=faces_synth",
    "data.image_size=64",
    "data.synth.n_train=4",
    "data.synth.n_val=2",
    "data.synth.n_test=2",
    "data.synth.real_frames=2",
    "data.synth.fake_frames=2",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.num_workers=0",
    "data.balance=false",
]


def real_data(*parts: str) -> Path:
    """Path under shared/data/real, skipping the test when it is absent."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared real samples absent: {path}")
    return path


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the session, so synthetic datasets are generated once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path: Path, data_cache: Path) -> Callable[..., DictConfig]:
    """Composes ``conf/<name>.yaml`` with overrides, output and data under tmp paths, CPU, no workers."""

    def _make(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.paths.data_dir = str(data_cache)
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
            cfg.extras.print_config = False
            if "trainer" in cfg:
                cfg.trainer.accelerator = "cpu"
                cfg.trainer.devices = 1
                cfg.trainer.enable_progress_bar = False
            if "logger" in cfg and cfg.logger:
                cfg.logger = {k: v for k, v in cfg.logger.items() if k == "csv"} or None
            if "callbacks" in cfg and cfg.callbacks:
                cfg.callbacks.pop("rich_progress_bar", None)
                cfg.callbacks.pop("model_summary", None)
        HydraConfig().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()
