"""Errors that are the user's to fix; the command-line apps print them in one line (see ``forgery.cli``)."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "OfficialWeightsError"]


class ConfigError(ValueError):
    """A configuration that cannot work: groups that do not go together, an option out of range."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not forgery's, the other model's, or not loadable safely."""


class OfficialWeightsError(ValueError):
    """Official weights that cannot be loaded: unreadable, of the other model, or a key that does not map."""
