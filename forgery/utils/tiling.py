"""Sliding-window (tiled) inference of dense-prediction networks: memory bounded by the tile, not the image.

A fully convolutional network evaluated on a whole image needs activations proportional to H x W (a NIST16
probe is 3488 x 2616). :func:`tiled_apply` runs the network on overlapping ``tile`` x ``tile`` windows
instead and blends the per-tile outputs back into one (B, C, H, W) map, so the peak activation memory is
that of a (B, 3, tile, tile) forward pass; only the output accumulators grow with the image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from forgery.errors import ConfigError

__all__ = ["check_tiling", "tile_starts", "blend_window", "tiled_apply"]


def check_tiling(tile: int, overlap: int, multiple: int = 1) -> None:
    """Raises ConfigError (a ValueError) unless ``tile`` is a positive multiple of ``multiple`` and
    0 <= overlap < tile."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0 or tile % multiple:
        raise ConfigError(f"tile must be a positive multiple of {multiple} (e.g. 512), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise ConfigError(f"tile overlap must be an integer in [0, tile={tile}), got {overlap!r}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the windows covering ``length``: stride ``tile - overlap``, the last window aligned
    to the end (so it may overlap its neighbour by more); ``[0]`` when ``length <= tile``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = -(-(length - tile) // stride) + 1  # ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(n)})


def blend_window(tile: int, overlap: int, device: torch.device | None = None) -> Tensor:
    """(tile,) float64 linear ramp: rises over the first ``overlap`` pixels, flat 1 in the middle, falls over
    the last ``overlap``; strictly positive. Two windows overlapping by exactly ``overlap`` sum to 1 there,
    so seams between tiles (whose borders see less context) are cross-faded rather than averaged."""
    i = torch.arange(tile, dtype=torch.float64, device=device)
    ramp = torch.minimum(i + 1, tile - i) / (overlap + 1)
    return ramp.clamp(max=1.0)


@torch.no_grad()
def tiled_apply(
    fn: Callable[[Tensor], Tensor], images: Tensor, tile: int, overlap: int = 64, multiple: int = 1
) -> Tensor:
    """Applies a dense-prediction ``fn`` tile by tile and blends the outputs into one map.

    Windows of ``tile`` x ``tile`` slide with stride ``tile - overlap``; the last window of each row/column is
    aligned to the image border, and a side shorter than ``tile`` is zero-padded up to it (the padding is
    cropped from the output). Overlapping outputs are blended with the separable linear window of
    :func:`blend_window` (a weighted average, accumulated in float64 -- float32 on MPS --, so a pointwise
    ``fn`` gives exactly its untiled result). ``fn`` is called once per window position, on all B images at
    once, without gradients: peak activation memory is that of ``fn`` on (B, C_in, tile, tile).

    Args:
        fn: (B, C_in, tile, tile) -> (B, C, tile, tile); a dense prediction at input resolution.
        images: (B, C_in, H, W), any H and W.
        tile: window side (a multiple of ``multiple``).
        overlap: pixels shared by neighbouring windows, in [0, tile).
        multiple: ``tile`` must be a multiple of it (16 for MTSE-Net).

    Returns:
        (B, C, H, W) blended output, float32 (or ``fn``'s dtype if wider).
    """
    check_tiling(tile, overlap, multiple)
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    ph, pw = max(tile - h, 0), max(tile - w, 0)
    if ph or pw:
        images = torch.nn.functional.pad(images, (0, pw, 0, ph))
    acc_dtype = torch.float32 if images.device.type == "mps" else torch.float64
    ramp = blend_window(tile, overlap, images.device).to(acc_dtype)
    window = ramp[:, None] * ramp[None, :]  # (tile, tile)
    hh, ww = h + ph, w + pw
    weight = torch.zeros(hh, ww, dtype=acc_dtype, device=images.device)
    acc: Tensor | None = None
    out_dtype = torch.float32
    for top in tile_starts(hh, tile, overlap):
        for left in tile_starts(ww, tile, overlap):
            y = fn(images[:, :, top : top + tile, left : left + tile])
            if y.dim() != 4 or y.shape[0] != b or y.shape[-2:] != (tile, tile):
                raise ValueError(
                    f"fn must map (B, C, {tile}, {tile}) to (B, C', {tile}, {tile}), got {tuple(y.shape)}"
                )
            if acc is None:
                out_dtype = torch.promote_types(y.dtype, torch.float32)
                acc = torch.zeros(b, y.shape[1], hh, ww, dtype=acc_dtype, device=images.device)
            acc[:, :, top : top + tile, left : left + tile] += y.to(acc_dtype) * window
            weight[top : top + tile, left : left + tile] += window
    assert acc is not None
    return (acc / weight)[:, :, :h, :w].to(out_dtype)
