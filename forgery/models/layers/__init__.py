"""Reusable network layers."""

from forgery.models.layers.activations import out_of_place_silu
from forgery.models.layers.depthwise import fast_depthwise_grads
from forgery.models.layers.squeeze_excite import SqueezeExcite

__all__ = ["SqueezeExcite", "fast_depthwise_grads", "out_of_place_silu"]
