"""Benchmark entry point: ``forgery-bench [bench=quick|full] [bench.device=cuda] [bench.steps=5 ...]``.

Composes each case's ``model`` / ``loss`` / ``augmentation`` exactly as ``forgery-train`` would (the same
config groups and overrides), runs :func:`forgery.bench.run_bench`, writes
``<out_dir>/<preset>-<device>.json`` and the table as ``.md`` beside it (atomically), and prints the table.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from forgery.cli import config_dir, hydra_app
from forgery.utils.io import atomic_write_text
from forgery.utils.resolvers import register_resolvers
from forgery.utils.run import extras, write_json

if TYPE_CHECKING:
    from forgery.bench import StepCase

# forgery.bench (torch, Lightning) is imported inside the functions: --help and --cfg job need neither

__all__ = ["bench", "compose_groups", "main"]

log = logging.getLogger(__name__)

_GROUPS = ("model", "loss", "augmentation")


def compose_groups(groups: Mapping[str, str | None], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved ``model`` / ``loss`` / ``augmentation`` configs that ``forgery-train`` composes from
    these group choices and overrides (``augmentation: none`` or null: no augmentation)."""
    choices = [f"{g}={groups[g] if groups.get(g) else 'none'}" for g in _GROUPS if g in groups]
    args = [*choices, *overrides]
    if GlobalHydra.instance().is_initialized():
        cfg = hydra.compose(config_name="train", overrides=args)
    else:
        register_resolvers()
        with hydra.initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = hydra.compose(config_name="train", overrides=args)
    out = {g: OmegaConf.to_container(cfg[g], resolve=True) if cfg.get(g) else None for g in _GROUPS}
    if groups.get("augmentation") in (None, "none"):
        out["augmentation"] = None
    return out


def _cases(spec: DictConfig, device: str) -> list[StepCase]:
    from forgery.bench import StepCase, expand_cases

    cases = []
    raw = OmegaConf.to_container(spec.cases, resolve=True) if spec.get("cases") else {}  # null: none
    for one in expand_cases(raw):  # type: ignore[arg-type]
        groups = one.pop("groups")
        overrides = tuple(one.pop("overrides", ()) or ())
        cfgs = compose_groups(groups, overrides)
        one.setdefault("warmup", spec.warmup)
        one.setdefault("steps", spec.steps)
        cases.append(StepCase(**one, **cfgs, device=device, threads=spec.get("threads"), overrides=overrides))
    return cases


def _official(spec: DictConfig, device: str) -> tuple[list[Any] | None, list[dict[str, str]]]:
    """``bench.official`` -> the comparisons to run (None: the section is null) and those skipped, with why
    (a kind whose ``<kind>_repo`` is null)."""
    from forgery.bench.official import OFFICIAL_KINDS, OfficialCase, check_official_repo
    from forgery.errors import ConfigError

    section = OmegaConf.to_container(spec.official, resolve=True) if spec.get("official") else None
    if not section:
        return None, []
    runs, skipped = [], []
    for label, one in (section.get("cases") or {}).items():  # type: ignore[union-attr]
        if not one:  # bench.official.cases.<name>=null leaves it out
            continue
        one = dict(one)
        kind = one.pop("kind", None)
        if kind not in OFFICIAL_KINDS:
            raise ConfigError(
                f"bench.official.cases.{label}.kind must be one of {OFFICIAL_KINDS}, got {kind!r}"
            )
        repo = section.get(f"{kind}_repo")  # type: ignore[union-attr]
        if not repo:
            skipped.append({"label": label, "reason": f"bench.official.{kind}_repo is not set"})
            continue
        cfgs = compose_groups(one.pop("groups"), tuple(one.pop("overrides", ()) or ()))
        runs.append(
            OfficialCase(
                label=label,
                kind=kind,
                repo=str(check_official_repo(kind, str(repo))),  # before the measurements, not after
                **cfgs,
                **one,
                **{k: int(section[k]) for k in ("rounds", "warmup") if section.get(k) is not None},  # type: ignore[index,union-attr]
                threads=spec.get("threads"),
                device=device,
            )
        )
    return runs, skipped


def bench(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """Runs the preset ``cfg.bench``; returns the record and the JSON path written."""
    from forgery.bench import format_table, run_bench
    from forgery.bench.system import resolve_device

    spec = cfg.bench
    device = resolve_device(spec.device)
    cases = _cases(spec, device)
    eval_models = []
    models = OmegaConf.to_container(spec.eval_models, resolve=True) if spec.get("eval_models") else {}
    for groups in (models or {}).values():  # type: ignore[union-attr]
        if not groups:  # bench.eval_models.<name>=null leaves that model out
            continue
        c = compose_groups(groups["groups"], groups.get("overrides", ()))  # type: ignore[index]
        eval_models.append((c["model"], c["loss"]))
    official, skipped = _official(spec, device)
    plain = OmegaConf.to_container(spec, resolve=True)
    command = cfg.get("command") or "forgery-bench " + " ".join(sys.argv[1:])
    payload = run_bench(
        {**plain, "device": device},  # type: ignore[dict-item]
        cases,
        eval_models,
        command=command,
        official=official,
        official_skipped=skipped,
    )
    out = Path(cfg.out_dir) / f"{payload['preset']}-{device}.json"
    write_json(out, payload)
    table = format_table(payload)
    md = atomic_write_text(out.with_suffix(".md"), table)
    print(table)
    print(f"forgery-bench: benchmark written to {out} and {md}", flush=True)
    return payload, out


@hydra_app("bench", prog="forgery-bench")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    bench(cfg)


if __name__ == "__main__":
    main()
