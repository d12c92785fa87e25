"""Torch dataset over :class:`~forgery.data.splicing.sources.SplicingRecord` lists."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from forgery.data.base import check_on_error
from forgery.data.splicing.io import DataError, load_image, load_mask
from forgery.data.splicing.sources import SplicingRecord
from forgery.errors import ConfigError

__all__ = ["SplicingDataset", "RESIZE_POLICIES"]

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("resize", "pad_crop", "none", "tile")


class SplicingDataset(Dataset):
    """Images and binary masks, brought to a fixed size.

    Samples are dicts: ``image`` (3, S, S) float in [0, 1], ``mask`` (1, S, S) float {0, 1}, ``valid``
    (1, S, S) bool (False on padding, which the metrics leave out), ``label`` long (1 tampered, 0 authentic),
    ``index`` long (position in ``records``) and ``id`` (str).

    Args:
        records: what to load.
        image_size: S; the network needs S divisible by 16.
        resize: ``resize`` (bilinear image, nearest mask, aspect ratio not kept), ``pad_crop`` (zero-pad,
            marked invalid, to at least S, then crop S x S: random in training, centred otherwise), ``none``
            (native size; use
            batch size 1; H and W are zero-padded up to a multiple of 16, marked invalid) or ``tile``
            (the same samples as ``none``, for a model that evaluates them tile by tile, ``model.eval_tile``,
            so that memory stays bounded on large images).
        train: random crops for ``pad_crop``.
        on_error: ``raise`` (default) stops at a bad file with its name and the problem; ``skip`` returns None
            for it (logged with the reason), which :func:`~forgery.data.base.collate_skipping` drops and
            counts.
    """

    def __init__(
        self,
        records: Sequence[SplicingRecord],
        image_size: int = 384,
        resize: str = "resize",
        train: bool = False,
        on_error: str = "raise",
    ) -> None:
        self.on_error = check_on_error(on_error)
        if resize not in RESIZE_POLICIES:
            raise ConfigError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
        self.records = list(records)
        self.image_size = image_size
        self.resize = resize
        self.train = train

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and mask (H, W) bool at native size; checks they agree."""
        rec = self.records[index]
        image = load_image(rec.image)
        if rec.mask is None:
            return image, np.zeros(image.shape[:2], dtype=bool)
        mask = load_mask(rec.mask, rec.mask_rule)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{rec.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {rec.image} is "
                f"{image.shape[1]}x{image.shape[0]} (W x H)"
            )
        return image, mask

    def __getitem__(self, index: int) -> dict | None:
        try:
            image, mask = self.load(index)
        except DataError as err:
            if self.on_error == "raise":
                raise
            log.warning("skipping sample %d: %s", index, err)
            return None
        image, mask, valid = self._fit(image, mask, index)
        rec = self.records[index]
        return {
            "image": torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0),
            "mask": torch.from_numpy(np.array(mask))[None].float(),
            "valid": torch.from_numpy(np.array(valid))[None],
            "label": torch.tensor(rec.label, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "id": rec.id,
        }

    def _fit(
        self, image: np.ndarray, mask: np.ndarray, index: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image, mask and valid-pixel mask (False on padding) at the policy's size."""
        s = self.image_size
        h, w = mask.shape
        valid = np.ones((h, w), dtype=bool)
        if self.resize == "resize":
            if (h, w) != (s, s):
                image = np.asarray(Image.fromarray(image).resize((s, s), Image.BILINEAR))
                mask = np.asarray(Image.fromarray(mask).resize((s, s), Image.NEAREST))
            return image, mask, np.ones((s, s), dtype=bool)
        if self.resize in ("none", "tile"):  # native size; "tile": the module bounds memory by tiling
            ph, pw = -h % 16, -w % 16
            return _pad(image, mask, valid, h + ph, w + pw)
        image, mask, valid = _pad(image, mask, valid, max(h, s), max(w, s))
        h, w = mask.shape
        if self.train:
            rng = np.random.default_rng((torch.initial_seed() + index) % 2**32)
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        else:
            top, left = (h - s) // 2, (w - s) // 2
        crop = (slice(top, top + s), slice(left, left + s))
        return image[crop], mask[crop], valid[crop]


def _pad(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dh, dw = h - mask.shape[0], w - mask.shape[1]
    if dh == 0 and dw == 0:
        return image, mask, valid
    return (
        np.pad(image, ((0, dh), (0, dw), (0, 0))),
        np.pad(mask, ((0, dh), (0, dw))),
        np.pad(valid, ((0, dh), (0, dw))),
    )
