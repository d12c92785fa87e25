"""Run-time helpers: config printing, metrics files, checkpoint paths."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgery.utils.io import atomic_write_text

__all__ = ["extras", "overridden", "write_json", "to_floats", "resolve_ckpt_path", "print_config"]

log = logging.getLogger(__name__)


def print_config(cfg: DictConfig) -> None:
    """Prints the composed config as a rich tree (resolved where possible)."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    for key in cfg:
        branch = tree.add(str(key))
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)


def extras(cfg: DictConfig) -> None:
    """Optional start-up utilities from ``cfg.extras``."""
    ex = cfg.get("extras") or {}
    if ex.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if ex.get("print_config") and not os.environ.get("FORGERY_QUIET"):
        print_config(cfg)


def overridden(key: str) -> bool:
    """Whether the command line of this Hydra run set ``key`` (``key=``, ``+key=``, ``++key=``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    for item in HydraConfig.get().overrides.task:
        name = item.split("=", 1)[0].lstrip("+~")
        if name == key:
            return True
    return False


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Tensors and numbers -> JSON-safe floats (NaN -> None)."""
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        f = float(v.item() if hasattr(v, "item") else v)
        out[k] = None if math.isnan(f) else f
    return out


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Writes JSON atomically (temp file + rename), so no half-written file is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """``last`` means ``<run dir>/checkpoints/last.ckpt``; anything else must exist."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
    else:
        path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return str(path)
