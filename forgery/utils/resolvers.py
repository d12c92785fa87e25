"""OmegaConf resolvers used by the configs (registered on import of ``forgery.train``)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

__all__ = ["auto_precision", "register_resolvers"]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision() -> str:
    """``bf16-mixed`` where the hardware runs bfloat16 natively (CUDA with bf16, CPUs with AVX512-BF16/AMX),
    else ``32-true``. Only used where a config asks for it (``${forgery_precision:}``)."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if _cpu_has_bf16() else "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("forgery_precision"):
        OmegaConf.register_new_resolver("forgery_precision", auto_precision)
