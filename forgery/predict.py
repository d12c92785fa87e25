"""Prediction entry point: ``forgery-predict ckpt_path=... input=<image or folder>``.

For a splicing model, each image gives ``<stem>_prob.png`` (P(tampered) x 255), ``<stem>_mask.png``
(0/255 at ``threshold``) and ``<stem>_overlay.png``; ``predictions.json`` holds the image-level scores
(max of the probability map, tampered-area fraction). Images are processed at native size (padded to a
multiple of 16); a longer side above ``max_size`` is resized down first to bound memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from forgery.data.splicing.io import DataError, load_image
from forgery.modules import load_module
from forgery.train import CONFIG_DIR
from forgery.utils.run import extras, write_json
from forgery.utils.visualize import overlay

__all__ = ["predict_images", "main", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def _inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
        return files
    raise FileNotFoundError(f"input not found: {path}")


def _save(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(arr).save(tmp)
    tmp.replace(path)


@torch.no_grad()
def predict_images(
    module: torch.nn.Module,
    paths: list[Path],
    out_dir: Path,
    threshold: float = 0.5,
    max_size: int = 2048,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Runs a splicing module over image files; writes PNGs per image and returns the scores per file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    module = module.to(device).eval()
    scores: dict[str, dict[str, Any]] = {}
    for path in paths:
        rgb = np.array(load_image(path))
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
        scale = min(1.0, max_size / max(h, w))
        if scale < 1.0:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
        sh, sw = x.shape[-2:]
        x = F.pad(x, (0, -sw % 16, 0, -sh % 16), mode="replicate")
        prob = module(x).mask_prob[:, None, :sh, :sw]
        if scale < 1.0:
            prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        img = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
        binary = (prob > threshold).float()
        stem = path.stem if len(paths) == 1 else str(path.relative_to(paths[0].parent)).rsplit(".", 1)[0]
        stem = stem.replace("/", "__")
        to_u8 = lambda t: (t[0].clamp(0, 1) * 255).round().byte().cpu().numpy()  # noqa: E731
        _save(to_u8(prob[:, 0]), out_dir / f"{stem}_prob.png")
        _save(to_u8(binary[:, 0]), out_dir / f"{stem}_mask.png")
        _save(to_u8(overlay(img, binary)).transpose(1, 2, 0), out_dir / f"{stem}_overlay.png")
        scores[str(path)] = {
            "score": float(prob.max()),
            "tampered_fraction": float(binary.mean()),
            "height": h,
            "width": w,
        }
        log.info("%s: score %.3f", path, scores[str(path)]["score"])
    return scores


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_module(cfg.ckpt_path, kind="splicing")
    paths = _inputs(Path(cfg.input))
    out_dir = Path(cfg.output_dir)
    scores = predict_images(module, paths, out_dir, cfg.threshold, cfg.max_size, device)
    write_json(
        out_dir / "predictions.json",
        {"checkpoint": str(cfg.ckpt_path), "threshold": cfg.threshold, "images": scores},
    )
    log.info("wrote %d predictions to %s", len(scores), out_dir)


if __name__ == "__main__":
    main()
