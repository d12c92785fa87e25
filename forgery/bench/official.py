"""forgery's training steps timed against the papers' official code, interleaved in one process.

The official code is not part of forgery: point the benchmark at your own clone of it
(``bench.official.mat_repo`` = ``yoctta/multiple-attention``, ``bench.official.mtse_repo`` =
``YulansZhang/Multi-task-SE-Network-for-Image-Splicing-Localization``). Its modules are imported from that
folder, in the measuring process only (a fresh one per case under ``bench.isolate``).

Each case builds both steps at the same batch, size and recipe:

* **official MAT**: ``models.MAT.MAT(**config.train_config(...).net_config)`` with the recipe of the
  official ``main.py`` (EfficientNet-B4, attention layer b5, texture layer b2, margins [0.2, -0.8] and 0.8),
  ``AGDA(**AGDA_config)``, one step of the official ``train.py``: ``net(X, y, train_batch=True, AG=AG)``, the
  loss of its ``train_loss`` (the config's weights), backward, AdamW step, ``zero_grad``. No weights can be
  downloaded here: ``EfficientNet.from_pretrained`` is replaced by ``from_name`` (the same network, random
  weights; timing does not depend on them). fp32, NCHW, as the official code runs.
* **official MTSE-Net**: ``Movenet7f4attention_adaption.Movenet([size, size])`` and the official
  training step (CE(mask) + 0.2 CE(mask edge) + 0.8 MSE(image edge), backward, the official optimizer).
* **ours**: the module ``forgery-train`` builds from the case's config groups, one
  ``training_step`` + backward + the configured optimizer's step + ``zero_grad`` (Lightning's automatic
  optimisation does the same), with the model config's layout (channels-last).

After ``warmup`` steps of each, every round runs one official step and one of ours, alternating which goes
first; the ratio of a round is official time / our time (wall and process CPU time). The median and range over
rounds are reported: on a shared machine the CPU-time ratio is the fairer figure.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from forgery.bench.steps import device_batch, spread
from forgery.bench.system import set_threads, sync
from forgery.errors import ConfigError

__all__ = ["OFFICIAL_KINDS", "OfficialCase", "check_official_repo", "run_official_case"]

OFFICIAL_KINDS = ("mat", "mtse")
MAT_FILES = ("models/MAT.py", "AGDA.py", "config.py", "models/efficientnet/model.py")
MTSE_FILES = ("Movenet7f4attention_adaption.py",)


@dataclass(frozen=True)
class OfficialCase:
    """One comparison: ``kind`` (``mat`` | ``mtse``), the official clone ``repo``, our resolved ``model`` /
    ``loss`` / ``augmentation`` configs (``augmentation`` None: MAT without AGDA on both sides) and the
    official MAT's backbone ``official_net`` (its recipe's ``efficientnet-b4``)."""

    label: str
    kind: str
    repo: str
    batch: int
    size: int
    model: Mapping[str, Any]
    loss: Mapping[str, Any]
    augmentation: Mapping[str, Any] | None = None
    official_net: str = "efficientnet-b4"
    rounds: int = 6
    warmup: int = 2
    threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in OFFICIAL_KINDS:
            raise ConfigError(f"bench.official case {self.label!r}: kind must be one of {OFFICIAL_KINDS}")
        if self.batch < 1 or self.rounds < 1 or self.warmup < 0:
            raise ConfigError(
                f"bench.official case {self.label!r}: needs batch >= 1, rounds >= 1, warmup >= 0, got "
                f"batch={self.batch}, rounds={self.rounds}, warmup={self.warmup}"
            )


@contextlib.contextmanager
def _official_imports(repo: Path) -> Iterator[None]:
    """Imports from ``repo`` first. The official code's top-level names are generic (``utils``, ``models``,
    ``config``): modules of those names already imported are set aside meanwhile (so the official ones are
    found) and put back afterwards, and the official ones are forgotten (so they shadow nothing later)."""
    tops = {p.stem for p in repo.glob("*.py")} | {p.name for p in repo.iterdir() if p.is_dir()}
    aside = {n: m for n, m in sys.modules.items() if n.split(".")[0] in tops}
    for name in aside:
        del sys.modules[name]
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        sys.path.remove(str(repo))
        for name in [n for n in sys.modules if n.split(".")[0] in tops]:
            del sys.modules[name]
        sys.modules.update(aside)


def check_official_repo(kind: str, repo: str | Path) -> Path:
    """``repo`` resolved, after checking that it holds the official ``kind`` code's files."""
    repo = Path(repo).expanduser().resolve()
    files = MAT_FILES if kind == "mat" else MTSE_FILES
    if not repo.is_dir():
        raise FileNotFoundError(f"bench.official.{kind}_repo: {repo}: no such folder")
    missing = [f for f in files if not (repo / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"bench.official.{kind}_repo: {repo} is not a clone of the official {kind.upper()} code "
            f"(missing {', '.join(missing)})"
        )
    return repo


def _commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _official_mat_step(repo: Path, case: OfficialCase) -> Callable[[], None]:
    """One step of the official ``train.py`` (``run`` with ``phase='train'``) on a random batch."""
    check_official_repo("mat", repo)
    with _official_imports(repo):
        config = importlib.import_module("config")
        efficientnet = importlib.import_module("models.efficientnet")
        mat_module = importlib.import_module("models.MAT")
        agda_module = importlib.import_module("AGDA")
        EfficientNet = efficientnet.EfficientNet

        def from_pretrained(
            name: str, advprop: bool = False, num_classes: int = 1000, in_channels: int = 3, escape: str = ""
        ) -> Any:  # what the official from_pretrained builds, without downloading its weights
            return EfficientNet.from_name(name, override_params={"num_classes": num_classes}, escape=escape)

        EfficientNet.from_pretrained = staticmethod(from_pretrained)
        # the recipe of the official main.py (aexp), at the case's size; without AGDA as train.py runs it
        # when its loss weight is 0 (AG=None)
        recipe: dict[str, Any] = {"attention_layer": "b5", "feature_layer": "b2", "inner_margin": [0.2, -0.8]}
        recipe.update(margin=0.8, resize=(case.size, case.size))
        if case.augmentation is None:
            recipe["AGDA_loss_weight"] = 0
        cfg = config.train_config("forgery-bench", ["ff-all-c23", case.official_net], **recipe)
        torch.manual_seed(0)
        net = mat_module.MAT(**cfg.net_config).train()
        ag = agda_module.AGDA(**cfg.AGDA_config) if cfg.AGDA_loss_weight else None
        net.to(case.device)
        ag = ag.to(case.device) if ag is not None else None
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas, weight_decay=cfg.weight_decay
    )
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(case.batch, 3, case.size, case.size, generator=g) - 0.5) / 0.5  # official normalisation
    x, y = x.to(case.device), (torch.arange(case.batch) % 2).to(case.device)

    def step() -> None:
        pack = net(x, y, train_batch=True, AG=ag)
        # official train.py: train_loss(loss_pack, config)
        loss = cfg.ensemble_loss_weight * pack["ensemble_loss"] + cfg.aux_loss_weight * pack["aux_loss"]
        if cfg.AGDA_loss_weight != 0:
            loss = loss + cfg.AGDA_loss_weight * pack["AGDA_ensemble_loss"]
            loss = loss + cfg.match_loss_weight * pack["match_loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def _official_mtse_step(repo: Path, case: OfficialCase) -> Callable[[], None]:
    """One step of the official ``train_mg5attention_adaption.py`` on a random batch: Adam (lr 1e-3),
    ``zero_grad``, train-mode forward, CE(mask) + 0.2 CE(mask edge) + 0.8 MSE(image edge), backward, step."""
    check_official_repo("mtse", repo)
    with _official_imports(repo):
        movenet = importlib.import_module("Movenet7f4attention_adaption")
        torch.manual_seed(0)
        net = movenet.Movenet([case.size, case.size]).to(case.device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    b, n = case.batch, case.size
    x = torch.rand(b, 3, n, n, generator=g).to(case.device)
    mask = (torch.rand(b, n, n, generator=g) > 0.8).long().to(case.device)
    mask_edge = (torch.rand(b, n, n, generator=g) > 0.95).long().to(case.device)
    image_edge = torch.rand(b, 1, n, n, generator=g).to(case.device)

    def step() -> None:
        optimizer.zero_grad()
        end1, end2, end3, *_ = net(x)
        loss = F.cross_entropy(end1, mask) + 0.2 * F.cross_entropy(end2, mask_edge)
        loss = loss + 0.8 * F.mse_loss(end3, image_edge)
        loss.backward()
        optimizer.step()

    return step


def _our_step(case: OfficialCase) -> tuple[Callable[[], None], bool]:
    """One step of our module as Lightning runs it (``on_after_batch_transfer``, ``training_step``, backward,
    the configured optimizer's step, ``zero_grad``); and whether the module runs channels-last."""
    from forgery.modules.base import build_module

    torch.manual_seed(0)
    model = {**dict(case.model), "compile": False}
    module = build_module(model, dict(case.loss), dict(case.augmentation) if case.augmentation else None)
    module.to(case.device).train()
    optimizer = module.configure_optimizers()["optimizer"]
    batch = device_batch(module, case.batch, case.size, case.device)

    def step() -> None:
        loss = module.training_step(module.on_after_batch_transfer(dict(batch), 0), 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    layout = bool(getattr(module, "uses_channels_last", module.hparams.get("channels_last", False)))
    return step, layout


def _quiet(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with warnings ignored (the official code's deprecations; our ``self.log()`` without a
    trainer), both sides alike."""

    def quiet() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()

    return quiet


def run_official_case(case: OfficialCase | Mapping[str, Any]) -> dict[str, Any]:
    """Times ``case`` (see the module docstring); returns its JSON record."""
    if not isinstance(case, OfficialCase):
        case = OfficialCase(**case)
    threads = set_threads(case.threads)
    repo = Path(case.repo).expanduser().resolve()
    official = (_official_mat_step if case.kind == "mat" else _official_mtse_step)(repo, case)
    ours, channels_last = _our_step(case)
    official, ours = _quiet(official), _quiet(ours)
    for _ in range(case.warmup):
        official()
        ours()
    wall: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    for r in range(case.rounds):
        order = [("official", official), ("ours", ours)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync(case.device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(case.device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    record = {k: v for k, v in asdict(case).items() if k not in ("model", "loss", "augmentation")}
    record.update(
        repo=str(repo),
        official_commit=_commit(repo),
        agda=case.augmentation is not None,
        threads=threads,
        ours_channels_last=channels_last,
        official_s=spread(wall["official"]),
        ours_s=spread(wall["ours"]),
        official_cpu_s=spread(cpu["official"]),
        ours_cpu_s=spread(cpu["ours"]),
        ratio_wall=spread([a / b for a, b in zip(wall["official"], wall["ours"])]),
        ratio_cpu=spread([a / b for a, b in zip(cpu["official"], cpu["ours"])]),
        official_images_per_s=case.batch / statistics.median(wall["official"]),
        ours_images_per_s=case.batch / statistics.median(wall["ours"]),
    )
    return record
