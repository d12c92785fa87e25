"""``forgery-predict ckpt_path=... input=<image, video or folder>`` (``python -m forgery.cli.predict``).

The checkpoint says which model it holds. A face-forgery (MAT) model takes images and videos: the largest
face of each image, or of ``faces.frames`` sampled frames of each video, is cropped at the size the model was
trained at and scored; ``predictions.json`` holds the fake probability per frame and per video (the mean
over its frames), and images or frames without a face are listed, not dropped silently. Each input also
gets its face crops (``<stem>/frame_XXXX.png``) and a picture of them with their attention maps
(``<stem>_attention.png``).

For a splicing model, each image gives ``<stem>_prob.png`` (P(tampered) x 255), ``<stem>_mask.png``
(0/255 at ``threshold``) and ``<stem>_overlay.png``; ``predictions.json`` holds the image-level scores
(``score``: the max of the probability map; ``tampered_fraction``: the share of pixels above the
threshold), and says so in its ``fields`` entry. By default images are resized to the size the model was
trained at (``image_size: null``) and the map is brought back to the image's size; ``image_size=native``
runs the image at its own size (padded to a multiple of 16; a longer side above ``max_size`` is resized down
first, unless the model tiles: ``tile=512`` or the checkpoint's ``model.eval_tile``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from forgery.cli import hydra_app
from forgery.cli.eval import apply_tiling
from forgery.data.splicing.io import DataError, load_image
from forgery.errors import ConfigError
from forgery.utils.io import atomic_path
from forgery.utils.run import extras, write_json

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: --help and --cfg job compose the config without it
_F = TypeVar("_F", bound=Callable[..., Any])


def _no_grad(fn: _F) -> _F:
    """``torch.no_grad()`` around ``fn``, importing torch only when it is called."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = [
    "FACE_FIELDS",
    "IMAGE_EXTENSIONS",
    "SPLICING_FIELDS",
    "VIDEO_EXTENSIONS",
    "main",
    "predict_faces",
    "predict_images",
    "prediction_size",
]

# what each number in predictions.json is (written into the file itself)
SPLICING_FIELDS = {
    "score": "image-level tamper score: the maximum of the tampered-probability map, in [0, 1] (a map "
    "statistic, not a calibrated probability that the image is tampered)",
    "tampered_fraction": "share of the image's pixels whose tampered probability exceeds the threshold",
    "height, width": "the input image's size; the PNG maps have this size",
}
FACE_FIELDS = {
    "frames": "fake probability (softmax of the classifier) of the largest face, per sampled frame number",
    "score": "the input's fake probability: the mean over the frames with a face (null when none had one)",
    "no_face": "sampled frame numbers where no face was found (left out of score)",
}

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
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp)


def _stem(path: Path, paths: list[Path]) -> str:
    """Output name of an input: its stem, or its path under the input folder with '/' -> '__'."""
    stem = path.stem if len(paths) == 1 else str(path.relative_to(paths[0].parent)).rsplit(".", 1)[0]
    return stem.replace("/", "__")


def _save_faces(
    out_dir: Path, stem: str, crops: list[np.ndarray], numbers: list[int], x: torch.Tensor, maps: Any
) -> dict[str, Any]:
    """Writes the crops and (for MAT) the attention picture of one input; returns their paths."""
    from forgery.utils.visualize import attention_grid, save_png

    folder = out_dir / stem
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for n, crop in zip(numbers, crops):
        _save(crop, folder / f"frame_{n:04d}.png")
        names.append(str(folder / f"frame_{n:04d}.png"))
    entry: dict[str, Any] = {"crops": names}
    if maps is not None:
        grid = attention_grid(x.float().cpu(), maps.float().cpu())
        entry["attention"] = str(save_png(grid, out_dir / f"{stem}_attention.png"))
    return entry


def prediction_size(requested: Any, trained: int | None) -> int | None:
    """The square size a splicing model predicts at: the trained size by default (``image_size: null``),
    ``native`` -> None (the image's own size), or an explicit size (a warning when it is not the trained one).
    """
    if requested is None:
        if trained is None:
            log.info("the checkpoint records no training size: predicting at native size")
        else:
            log.info(
                "predicting at %dx%d, the size the model was trained at (image_size=native for native)",
                trained,
                trained,
            )
        return trained
    if str(requested).lower() == "native":
        if trained is not None:
            log.warning("predicting at native image size as asked; the model was trained at %d", trained)
        return None
    try:
        size = int(requested)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size must be null, native or an integer, got {requested!r}") from None
    if size % 16:
        raise ConfigError(f"image_size must be a multiple of 16 for MTSE-Net, got {size}")
    if trained is not None and size != trained:
        log.warning("predicting at image_size=%d as asked; the model was trained at %d", size, trained)
    return size


@_no_grad
def predict_images(
    module: torch.nn.Module,
    paths: list[Path],
    out_dir: Path,
    threshold: float = 0.5,
    max_size: int = 2048,
    device: str = "cpu",
    tile: int | None = None,
    tile_overlap: int | None = None,
    size: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs a splicing module over image files; writes PNGs per image and returns the scores per file.

    ``size``: the network sees the image resized to size x size and its map is resized back to the image
    (what training and ``forgery-eval`` do); None runs the native size. ``tile`` / ``tile_overlap`` (None:
    the module's own ``eval_tile`` / ``eval_tile_overlap``) are set on the module; at native size with a
    tile, images are not resized to ``max_size``: larger ones run as overlapping tiles.
    """
    import torch
    import torch.nn.functional as F

    from forgery.utils.visualize import overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    module = module.to(device).eval()
    apply_tiling(module, tile, tile_overlap)
    tiled = bool(module.hparams.get("eval_tile"))
    scores: dict[str, dict[str, Any]] = {}
    for path in paths:
        rgb = np.array(load_image(path))
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
        if size is not None:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        else:
            scale = 1.0 if tiled else min(1.0, max_size / max(h, w))
            if scale < 1.0:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
        sh, sw = x.shape[-2:]
        x = F.pad(x, (0, -sw % 16, 0, -sh % 16), mode="replicate")
        prob = module(x).mask_prob[:, None, :sh, :sw]
        if (sh, sw) != (h, w):
            prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        img = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
        binary = (prob > threshold).float()
        stem = _stem(path, paths)
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


@_no_grad
def predict_faces(
    module: torch.nn.Module,
    paths: list[Path],
    image_size: int,
    frames: int = 20,
    stride: int = 5,
    scale: float = 1.3,
    detector: str = "mtcnn",
    device: str = "cpu",
    out_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Scores the largest face of each image, or of sampled frames of each video, with a face-forgery module.

    Returns per input: ``frames`` ({frame number: fake probability}), ``score`` (mean over frames with a
    face; None when no face was found) and ``no_face`` (frame numbers without a face). With ``out_dir``,
    writes each input's crops (``<stem>/frame_XXXX.png``) and ``<stem>_attention.png`` (each crop with its
    attention maps; MAT models), and the entries name them (``crops``, ``attention``).
    """
    import torch

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
        entry: dict[str, Any] = {}
        if crops:
            x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).to(device)
            out = module(x)
            probs = out.logits.float().softmax(dim=1)[:, 1].tolist()
            if out_dir is not None:
                entry = _save_faces(out_dir, _stem(path, paths), crops, numbers, x, out.attention_maps)
        score = float(np.mean(probs)) if probs else None
        results[str(path)] = {
            "frames": dict(zip(numbers, probs)),
            "score": score,
            "no_face": no_face,
            **entry,
        }
        log.info("%s: fake probability %s (%d/%d frames with a face)", path, score, len(probs), len(items))
    return results


@hydra_app("predict", prog="forgery-predict")
def main(cfg: DictConfig) -> None:
    source = Path(cfg.input)  # required values first: a missing input is reported before any loading
    ckpt_path = cfg.ckpt_path
    import torch

    from forgery.modules import load_module

    extras(cfg)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    module = load_module(ckpt_path)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = ((module.build_config or {}).get("data") or {}).get("image_size")
    if module.kind == "faces":
        paths = _inputs(source, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        size = trained or 380
        if cfg.get("image_size") is not None and str(cfg.image_size) != "native":
            size = int(cfg.image_size)
            if trained and size != trained:
                log.warning(
                    "face crops at image_size=%d as asked; the model was trained at %d", size, trained
                )
        f = cfg.faces
        scores = predict_faces(
            module, paths, size, f.frames, f.stride, f.scale, f.detector, device, out_dir=out_dir
        )
        payload = {
            "checkpoint": str(cfg.ckpt_path),
            "image_size": size,
            "fields": FACE_FIELDS,
            "inputs": scores,
        }
    else:
        paths = _inputs(source)
        size = prediction_size(cfg.get("image_size"), trained)
        scores = predict_images(
            module,
            paths,
            out_dir,
            cfg.threshold,
            cfg.max_size,
            device,
            tile=cfg.get("tile"),
            tile_overlap=cfg.get("tile_overlap"),
            size=size,
        )
        payload = {
            "checkpoint": str(cfg.ckpt_path),
            "threshold": cfg.threshold,
            "image_size": size or "native",
            "fields": SPLICING_FIELDS,
            "images": scores,
        }
    path = write_json(out_dir / "predictions.json", payload)
    print(f"forgery-predict: {len(scores)} prediction(s) in {path}", flush=True)


if __name__ == "__main__":
    main()
