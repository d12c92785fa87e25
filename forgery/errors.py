"""Errors that are the user's to fix; the command-line apps print them in one line (see ``forgery.cli``)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration that cannot work: groups that do not go together, an option out of range."""
