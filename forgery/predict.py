"""Prediction entry point: ``forgery-predict ckpt_path=... input=<image, video or folder>``.

The checkpoint says which model it holds. A face-forgery (MAT) model takes images and videos: the largest
face of each image, or of ``frames`` sampled frames of each video, is cropped and scored;
``predictions.json`` holds the fake probability per frame and per video (the mean of its frames), and images
or frames without a face are listed, not dropped silently.

For a splicing model, each image gives ``<stem>_prob.png`` (P(tampered) x 255), ``<stem>_mask.png``
(0/255 at ``threshold``) and ``<stem>_overlay.png``; ``predictions.json`` holds the image-level scores
(max of the probability map, tampered-area fraction). Images are processed at native size (padded to a
multiple of 16); a longer side above ``max_size`` is resized down first to bound memory, unless the model
tiles (``tile=512`` or the checkpoint's ``model.eval_tile``): then images stay at native size and larger ones
run as overlapping tiles, memory bounded by the tile.
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
from forgery.eval import apply_tiling
from forgery.modules import load_module
from forgery.train import CONFIG_DIR
from forgery.utils.run import extras, write_json
from forgery.utils.visualize import overlay

__all__ = ["predict_images", "predict_faces", "main", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _inputs(path: Path, extensions: set[str] = IMAGE_EXTENSIONS) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in extensions)
        if not files:
            raise DataError(f"{path}: no inputs ({', '.join(sorted(extensions))}) in this folder")
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
    tile: int | None = None,
    tile_overlap: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs a splicing module over image files; writes PNGs per image and returns the scores per file.

    ``tile`` / ``tile_overlap`` (None: the module's own ``eval_tile`` / ``eval_tile_overlap``) are set on the
    module. With a tile, images are not resized to ``max_size``: larger ones run as overlapping tiles.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    module = module.to(device).eval()
    apply_tiling(module, tile, tile_overlap)
    tiled = bool(module.hparams.get("eval_tile"))
    scores: dict[str, dict[str, Any]] = {}
    for path in paths:
        rgb = np.array(load_image(path))
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
        scale = 1.0 if tiled else min(1.0, max_size / max(h, w))
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


@torch.no_grad()
def predict_faces(
    module: torch.nn.Module,
    paths: list[Path],
    image_size: int,
    frames: int = 20,
    stride: int = 5,
    scale: float = 1.3,
    detector: str = "mtcnn",
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Scores the largest face of each image, or of sampled frames of each video, with a face-forgery module.

    Returns per input: ``frames`` ({frame number: fake probability}), ``score`` (mean over frames with a
    face; None when no face was found) and ``no_face`` (frame numbers without a face).
    """
    from forgery.data.faces.detectors import make_detector
    from forgery.data.faces.extract import largest_face, read_frames, sample_indices, square_crop

    det = make_detector(detector)
    module = module.to(device).eval()
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            items = list(read_frames(path, sample_indices(frames, stride, frames * stride)))
            if not items:
                raise DataError(f"{path}: no frames could be read from this video")
        else:
            items = [(0, np.array(load_image(path)))]
        crops, numbers, no_face = [], [], []
        for n, rgb in items:
            box = largest_face(det, rgb, detect_max_side=720)
            if box is None:
                no_face.append(n)
                continue
            crops.append(square_crop(rgb, box, scale=scale, size=image_size))
            numbers.append(n)
        probs: list[float] = []
        if crops:
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(device)
            probs = module(x).logits.float().softmax(dim=1)[:, 1].tolist()
        score = float(np.mean(probs)) if probs else None
        results[str(path)] = {"frames": dict(zip(numbers, probs)), "score": score, "no_face": no_face}
        log.info("%s: fake probability %s (%d/%d frames with a face)", path, score, len(probs), len(items))
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    extras(cfg)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_module(cfg.ckpt_path)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if module.kind == "faces":
        paths = _inputs(Path(cfg.input), IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        size = (module.build_config or {}).get("data", {}).get("image_size") or 380
        f = cfg.faces
        scores = predict_faces(module, paths, size, f.frames, f.stride, f.scale, f.detector, device)
        payload = {"checkpoint": str(cfg.ckpt_path), "inputs": scores}
    else:
        paths = _inputs(Path(cfg.input))
        scores = predict_images(
            module,
            paths,
            out_dir,
            cfg.threshold,
            cfg.max_size,
            device,
            tile=cfg.get("tile"),
            tile_overlap=cfg.get("tile_overlap"),
        )
        payload = {"checkpoint": str(cfg.ckpt_path), "threshold": cfg.threshold, "images": scores}
    write_json(out_dir / "predictions.json", payload)
    log.info("wrote %d predictions to %s", len(scores), out_dir)


if __name__ == "__main__":
    main()
