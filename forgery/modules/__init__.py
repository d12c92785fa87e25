"""LightningModules (training/evaluation logic) over the plain networks in ``forgery.models``."""

from forgery.modules.base import CheckpointError, ForgeryModule, build_module, check_task, load_module

__all__ = ["CheckpointError", "ForgeryModule", "build_module", "check_task", "load_module"]
