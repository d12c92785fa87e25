"""Reusable network layers."""

from forgery.models.layers.squeeze_excite import SqueezeExcite

__all__ = ["SqueezeExcite"]
