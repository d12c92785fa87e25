"""LightningModules (training/evaluation logic) over the plain networks in ``forgery.models``."""

from forgery.modules.base import CheckpointError, ForgeryModule, build_module, load_module

__all__ = ["CheckpointError", "ForgeryModule", "build_module", "load_module"]
