"""Instantiation helpers for callbacks and loggers (dicts of named entries in the config)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

__all__ = ["instantiate_callbacks", "instantiate_loggers", "wandb_has_credentials"]

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Instantiates every entry of ``cfg`` that has a ``_target_``."""
    callbacks: list[Callback] = []
    for name, cb in (cfg or {}).items():
        if isinstance(cb, DictConfig) and "_target_" in cb:
            log.info("callback %s <%s>", name, cb._target_)
            callbacks.append(hydra.utils.instantiate(cb))
    return callbacks


def wandb_has_credentials() -> bool:
    """Whether W&B can log online without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or "wandb" in netrc.read_text()
    except OSError:
        return False


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiates the configured loggers.

    W&B follows the user's environment (``WANDB_MODE``, ``wandb login``). A user with neither credentials nor
    ``WANDB_MODE`` gets an offline W&B run inside the run directory instead of a login prompt or a crash;
    the CSV logger always keeps a complete local record.
    """
    loggers: list[Logger] = []
    for name, lg in (cfg or {}).items():
        if not (isinstance(lg, DictConfig) and "_target_" in lg):
            continue
        kwargs = {}
        if lg._target_.endswith("WandbLogger") and "WANDB_MODE" not in os.environ:
            if not wandb_has_credentials():
                log.warning(
                    "W&B: no credentials and WANDB_MODE unset; logging offline to the run directory "
                    "(`wandb login` to log online, `wandb sync <run dir>/wandb` to upload later)."
                )
                kwargs["offline"] = True
        log.info("logger %s <%s>", name, lg._target_)
        logger = hydra.utils.instantiate(lg, **kwargs)
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            # Lightning passes anonymous=None to wandb.init, which recent W&B versions warn has no effect
            init.pop("anonymous", None)
        loggers.append(logger)
    return loggers
