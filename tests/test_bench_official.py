"""forgery-bench's comparison with the official code (forgery.bench.official), on stand-in official repos.

The official code is not part of forgery and is not here: these stand-ins have the official interfaces
(``config.train_config``, ``models.MAT.MAT``, ``AGDA.AGDA``, ``models.efficientnet.EfficientNet``,
``Movenet7f4attention_adaption.Movenet``) over tiny networks and log every call, so the tests check what
the harness calls, how often, and what it reports.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from forgery.bench import check_schema, format_table
from forgery.bench.official import OfficialCase, run_official_case
from forgery.cli.bench import bench, compose_groups

MAT_STUB = {
    "config.py": """
class train_config:
    def __init__(self, name, recipes=[], **params):
        self.recipes = list(recipes)
        self.learning_rate, self.adam_betas, self.weight_decay = 1e-4, (0.9, 0.999), 1e-6
        self.ensemble_loss_weight, self.aux_loss_weight = 1, 0.5
        self.AGDA_loss_weight, self.match_loss_weight = 1, 0.1
        self.net = [r for r in recipes if r.startswith("efficientnet")][0]
        for k, v in params.items():
            setattr(self, k, v)
        self.net_config = dict(net=self.net, size=self.resize, feature_layer=self.feature_layer,
                               attention_layer=self.attention_layer, margin=self.margin,
                               inner_margin=self.inner_margin)
        self.AGDA_config = dict(kernel_size=11)
""",
    "models/__init__.py": "",
    "models/efficientnet/__init__.py": "from .model import EfficientNet\n",
    "models/efficientnet/model.py": """
import torch.nn as nn

class EfficientNet(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)

    @classmethod
    def from_name(cls, model_name, override_params=None, escape=""):
        assert override_params == {"num_classes": 2} and escape == ""
        return cls(model_name)

    @classmethod
    def from_pretrained(cls, model_name, advprop=False, num_classes=1000, in_channels=3, escape=""):
        raise RuntimeError("would download weights")
""",
    "models/MAT.py": """
import json
from pathlib import Path
import torch
import torch.nn as nn
import torch.nn.functional as F
from models.efficientnet import EfficientNet
import utils  # the official repo's own top-level utils module

LOG = Path(__file__).resolve().parent.parent / "calls.jsonl"

class MAT(nn.Module):
    def __init__(self, net, size, **recipe):
        super().__init__()
        self.net = EfficientNet.from_pretrained(net, advprop=True, num_classes=2)
        self.fc = nn.Linear(4, 2)
        LOG.open("a").write(json.dumps({"init": net, "size": list(size), **recipe}) + "\\n")

    def forward(self, x, y=0, train_batch=False, AG=None):
        LOG.open("a").write(json.dumps({"train_batch": train_batch, "AG": AG is not None,
                                        "training": self.training, "x": list(x.shape)}) + "\\n")
        logits = self.fc(self.net(x).mean((2, 3)))
        pack = dict(ensemble_loss=F.cross_entropy(logits, y), aux_loss=logits.square().mean())
        if AG is not None:
            pack["AGDA_ensemble_loss"] = pack["ensemble_loss"] * 0.5
            pack["match_loss"] = logits.abs().mean()
        return pack
""",
    "AGDA.py": """
import torch.nn as nn

class AGDA(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
""",
    "utils.py": "SHADOW = 'official utils'\n",
}

MTSE_STUB = {
    "Movenet7f4attention_adaption.py": """
import json
from pathlib import Path
import torch.nn as nn

LOG = Path(__file__).resolve().parent / "calls.jsonl"

class Movenet(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        LOG.open("a").write(__import__("json").dumps({"init": list(size)}) + "\\n")

    def forward(self, x):
        LOG.open("a").write(json.dumps({"training": self.training, "x": list(x.shape)}) + "\\n")
        out = self.conv(x)
        end1, end2, end3 = out[:, :2], out[:, 2:4], out[:, 4:]
        return end1, end2, end3, end1.argmax(1), end2.argmax(1), end3
""",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.lstrip("\n"))
    return root


def _calls(repo: Path) -> list[dict]:
    return [json.loads(line) for line in (repo / "calls.jsonl").read_text().splitlines()]


@pytest.fixture
def mat_repo(tmp_path: Path) -> Path:
    return _write(tmp_path / "multiple-attention", MAT_STUB)


@pytest.fixture
def mtse_repo(tmp_path: Path) -> Path:
    return _write(tmp_path / "mtse", MTSE_STUB)


def _check_spreads(record: dict, rounds: int, batch: int) -> None:
    for key in ("official_s", "ours_s", "official_cpu_s", "ours_cpu_s"):
        assert len(record[key]["all"]) == rounds and record[key]["median"] == statistics.median(
            record[key]["all"]
        )
    for kind, times in (("wall", ("official_s", "ours_s")), ("cpu", ("official_cpu_s", "ours_cpu_s"))):
        ratios = [a / b for a, b in zip(record[times[0]]["all"], record[times[1]]["all"])]
        assert record[f"ratio_{kind}"]["all"] == pytest.approx(ratios)
        assert (
            record[f"ratio_{kind}"]["min"]
            <= record[f"ratio_{kind}"]["median"]
            <= record[f"ratio_{kind}"]["max"]
        )
    assert record["official_images_per_s"] == pytest.approx(batch / record["official_s"]["median"])
    assert record["ours_images_per_s"] == pytest.approx(batch / record["ours_s"]["median"])


@pytest.mark.parametrize("agda", [True, False])
def test_mat_comparison_runs_the_official_recipe_step(mat_repo: Path, agda: bool) -> None:
    ours = compose_groups(
        {"model": "mat", "loss": "mat", "augmentation": "agda" if agda else "none"},
        ["model.net.backbone=tf_efficientnet_b0"],
    )
    case = OfficialCase(
        label="mat", kind="mat", repo=str(mat_repo), batch=2, size=64, official_net="efficientnet-b0",
        rounds=3, warmup=1, threads=1, **ours,
    )  # fmt: skip
    record = run_official_case(case)
    init, *steps = _calls(mat_repo)
    # the official main.py recipe at the case's size and backbone (from_pretrained replaced: no download)
    assert init == {
        "init": "efficientnet-b0",
        "size": [64, 64],
        "feature_layer": "b2",
        "attention_layer": "b5",
        "margin": 0.8,
        "inner_margin": [0.2, -0.8],
    }
    # one official training step per warm-up step and round, in train mode, with AGDA exactly when ours has it
    assert steps == [{"train_batch": True, "AG": agda, "training": True, "x": [2, 3, 64, 64]}] * 4
    assert record["agda"] is agda and record["ours_channels_last"] is True
    assert record["official_commit"] is None  # not a git clone
    _check_spreads(record, rounds=3, batch=2)
    # the official top-level modules (config, models, utils, AGDA) are forgotten: nothing is shadowed
    assert not {"config", "models", "models.MAT", "AGDA"} & set(sys.modules)
    assert getattr(sys.modules.get("utils"), "SHADOW", None) is None


def test_mtse_comparison_runs_the_official_step(mtse_repo: Path) -> None:
    ours = compose_groups(
        {"model": "mtse_net", "loss": "mtse", "augmentation": "flip"}, ["model.net.width=4"]
    )
    case = OfficialCase(label="mtse_net", kind="mtse", repo=str(mtse_repo), batch=2, size=32, rounds=2,
                        warmup=2, threads=1, **ours)  # fmt: skip
    git = ["git", "-C", str(mtse_repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "official"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
    record = run_official_case(case)
    assert record["official_commit"] == head.strip()  # the clone's commit is in the record
    assert _calls(mtse_repo) == [{"init": [32, 32]}] + [{"training": True, "x": [2, 3, 32, 32]}] * 4
    _check_spreads(record, rounds=2, batch=2)


OFF = ["bench.cases=null", "bench.loaders=null", "bench.extraction=null", "bench.eval_models=null"]
TINY_OFFICIAL = [
    "bench.isolate=false",
    "bench.threads=1",
    "bench.official.rounds=1",
    "bench.official.warmup=1",
    "bench.official.cases.mtse_net.size=32",
    'bench.official.cases.mtse_net.overrides=["model.net.width=4"]',
    "bench.official.cases.mat.size=64",
]


def test_bench_reports_the_comparison_and_what_was_not_run(make_cfg, mat_repo: Path, tmp_path: Path) -> None:
    cfg = make_cfg(
        "bench", [*OFF, *TINY_OFFICIAL, f"bench.official.mat_repo={mat_repo}", f"out_dir={tmp_path}"]
    )
    payload, path = bench(cfg)
    written = json.loads(path.read_text())
    check_schema(written)
    assert [r["label"] for r in written["official"]["runs"]] == ["mat"]
    assert written["official"]["skipped"] == [
        {"label": "mtse_net", "reason": "bench.official.mtse_repo is not set"}
    ]
    assert written["official"]["runs"][0]["repo"] == str(mat_repo.resolve())
    table = path.with_suffix(".md").read_text()
    assert "Against the official code" in table and "| mat (mat) | 2 x 64 |" in table
    assert "not run: mtse_net (bench.official.mtse_repo is not set)" in table


def test_bench_without_official_section_has_none(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("bench", [*OFF, "bench.official=null", "bench.isolate=false", f"out_dir={tmp_path}"])
    payload, _ = bench(cfg)
    assert payload["official"] is None and "Against the official code" not in format_table(payload)


def test_a_folder_that_is_not_the_official_code_is_named_before_anything_runs(
    make_cfg, mtse_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = make_cfg("bench", [*OFF, *TINY_OFFICIAL, f"bench.official.mat_repo={mtse_repo}", f"out_dir={out}"])
    with pytest.raises(
        FileNotFoundError,
        match=r"bench.official.mat_repo: .*mtse is not a clone of the official "
        r"MAT code \(missing models/MAT.py, AGDA.py, config.py, models/efficientnet/model.py\)",
    ):
        bench(cfg)
    cfg = make_cfg("bench", [*OFF, f"bench.official.mtse_repo={tmp_path}/nowhere", f"out_dir={out}"])
    with pytest.raises(FileNotFoundError, match=r"bench.official.mtse_repo: .*nowhere: no such folder"):
        bench(cfg)
    assert not out.exists()
    assert not (mtse_repo / "calls.jsonl").exists()


def test_check_schema_names_a_bad_comparison() -> None:
    good = {
        "schema_version": 1, "preset": "x", "created": "now", "command": "c", "machine": {},
        "peak_flops_per_s": {}, "steps": [], "loaders": [], "eval_memory": {"runs": [], "growth": {}},
        "extraction": None,
    }  # fmt: skip
    check_schema(good)  # records from before the comparison have no "official"
    check_schema({**good, "official": {"runs": [], "skipped": []}})
    with pytest.raises(ValueError) as err:
        check_schema({**good, "official": {"runs": [{"label": "mat", "ratio_cpu": {"median": 1.2}}]}})
    text = str(err.value)
    assert "official.runs[0]: missing 'kind'" in text
    assert "official.runs[0].ratio_cpu: median / min / max missing or not numbers" in text
