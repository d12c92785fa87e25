"""OmegaConf resolvers used by the configs, registered by :func:`register_resolvers` (every app's ``main``
calls it before Hydra composes; tests call it in ``conftest.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

__all__ = [
    "auto_precision",
    "ensure_dir",
    "loader_workers",
    "register_resolvers",
    "usable_cpus",
    "working_dir",
]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision() -> str:
    """``bf16-mixed`` where the hardware runs bfloat16 natively (CUDA with bf16, CPUs with AVX512-BF16/AMX),
    else ``32-true``. Only used where a config asks for it (``${forgery_precision:}``)."""
    import torch  # here, not at the top: composing a config (``--cfg job``, ``--help``) needs no torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if _cpu_has_bf16() else "32-true"


def working_dir() -> str:
    """The absolute folder the command was started from. Unlike ``${hydra:runtime.cwd}`` it resolves before
    Hydra has set up a job, e.g. in ``hydra.sweep.dir`` of a multirun."""
    return os.getcwd()


def ensure_dir(path: str) -> str:
    """``path``, created if absent: for files that must exist before Hydra makes the folder (an Optuna
    study's sqlite file in the sweep directory)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a SLURM job's or a container's CPU set
    narrows; the machine's count where there is no mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def loader_workers(at_most: int | str = 4) -> int:
    """``${forgery_workers:N}``: N data-loading workers, or fewer on a machine with fewer usable CPUs
    (more workers than CPUs only compete for them, and PyTorch warns about it)."""
    return max(0, min(int(at_most), usable_cpus()))


RESOLVERS = {
    "forgery_precision": auto_precision,
    "forgery_cwd": working_dir,
    "forgery_dir": ensure_dir,
    "forgery_workers": loader_workers,
}


def register_resolvers() -> None:
    """Registers the ``forgery_*`` resolvers once (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
