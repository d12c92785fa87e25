"""Prediction pictures: sample grids saved as PNG in the run directory and sent to image-capable loggers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

__all__ = ["attention_grid", "log_image", "overlay", "save_png", "splicing_grid", "with_titles"]

SPLICING_COLUMNS = ("image", "ground truth", "probability", "overlay (p > 0.5)", "predicted edge")
GRID_PADDING = 2
TITLE_HEIGHT = 14


def with_titles(grid: Tensor, titles: list[str] | tuple[str, ...], cell_width: int) -> Tensor:
    """Adds a white strip above a ``make_grid`` picture (3, H, W) naming each column; returns (3, H + 14, W).

    ``cell_width`` is the width of one tile (without padding); titles are cut to fit their column.
    """
    width = grid.shape[-1]
    strip = Image.new("RGB", (width, TITLE_HEIGHT), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    step = cell_width + GRID_PADDING
    for j, title in enumerate(titles):
        text = str(title)
        while text and draw.textlength(text, font=font) > cell_width - 2:
            text = text[:-1]
        draw.text((GRID_PADDING + j * step + 1, 1), text, fill="black", font=font)
    header = torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float().div(255)
    return torch.cat([header.to(grid.dtype), grid], dim=1)


def overlay(
    images: Tensor, probs: Tensor, color: tuple[float, float, float] = (1.0, 0.0, 0.0), alpha: float = 0.5
) -> Tensor:
    """Tint images (B, 3, H, W) in [0, 1] by probabilities (B, 1, H, W) in [0, 1]."""
    tint = torch.tensor(color, device=images.device, dtype=images.dtype)[None, :, None, None]
    a = alpha * probs
    return images * (1 - a) + tint * a


def splicing_grid(images: Tensor, masks: Tensor, probs: Tensor, edges: Tensor) -> Tensor:
    """One row per sample: image | ground truth | probability | overlay | predicted image edge (titled).

    Args: images (N, 3, H, W) in [0, 1]; masks, probs, edges (N, 1, H, W) in [0, 1].
    Returns: (3, H', W') grid in [0, 1].
    """
    gray = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731
    tiles = torch.stack(
        [images, gray(masks), gray(probs), overlay(images, (probs > 0.5).float()), gray(edges.clamp(0, 1))],
        dim=1,
    ).flatten(0, 1)
    grid = make_grid(tiles.float().cpu(), nrow=5, padding=GRID_PADDING, pad_value=1.0)
    return with_titles(grid, SPLICING_COLUMNS, images.shape[-1])


def save_png(grid: Tensor, path: str | Path) -> Path:
    """Writes a (3, H, W) or (1, H, W) [0, 1] tensor as PNG (atomically) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = grid.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(np.ascontiguousarray(arr)).save(tmp)
    tmp.replace(path)
    return path


def log_image(loggers: list, key: str, path: Path, step: int) -> None:
    """Sends a saved picture to every logger that takes images (W&B, TensorBoard)."""
    for lg in loggers:
        name = type(lg).__name__
        if name == "WandbLogger":
            lg.log_image(key=key, images=[str(path)], step=step)
        elif name == "TensorBoardLogger":
            arr = np.asarray(Image.open(path).convert("RGB"))
            lg.experiment.add_image(key, arr, global_step=step, dataformats="HWC")


def _heat(maps: Tensor) -> Tensor:
    """(N, 1, H, W) in [0, 1] -> a simple blue-red colour map (N, 3, H, W)."""
    return torch.cat([maps, 1 - (2 * maps - 1).abs(), 1 - maps], dim=1)


def attention_grid(images: Tensor, maps: Tensor, agda: Tensor | None = None) -> Tensor:
    """One row per face: image | each attention map overlaid | AGDA example (if given), titled columns.

    Args: images (N, 3, H, W) in [0, 1]; maps (N, M, h, w) non-negative; agda (N, 3, H, W) in [0, 1].
    """
    n, m = maps.shape[:2]
    up = torch.nn.functional.interpolate(
        maps.float(), size=images.shape[-2:], mode="bilinear", align_corners=True
    )
    up = up / up.flatten(2).amax(dim=2).clamp_min(1e-8)[:, :, None, None]
    cols = [images] + [0.5 * images + 0.5 * _heat(up[:, j : j + 1]) for j in range(m)]
    titles = ["face"] + [f"attention {j + 1}" for j in range(m)]
    if agda is not None:
        cols.append(agda)
        titles.append("AGDA")
    tiles = torch.stack(cols, dim=1).flatten(0, 1)
    grid = make_grid(tiles.float().clamp(0, 1), nrow=len(cols), padding=GRID_PADDING, pad_value=1.0)
    return with_titles(grid, titles, images.shape[-1])
