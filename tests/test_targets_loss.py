"""Edge targets vs a SciPy reference, the MTSE loss vs hand-computed values, augmentation pairing."""

from __future__ import annotations

import math

import kornia.augmentation as K
import numpy as np
import torch
from scipy import ndimage

from forgery.augment.paired import PairedAugmentation
from forgery.losses.mtse import MTSELoss
from forgery.losses.targets import CROSS_3X3, edge_targets
from forgery.models.mtse_net import MTSEOutput

CROSS = CROSS_3X3.numpy().astype(bool)


def test_image_edge_equals_scipy_internal_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 17, 23, generator=g)
    masks = (torch.rand(3, 1, 17, 23, generator=g) > 0.5).float()
    image_edge, _ = edge_targets(images, masks)
    gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).numpy()
    ref = np.stack([im - ndimage.grey_erosion(im, footprint=CROSS, mode="nearest") for im in gray])
    assert image_edge.shape == (3, 1, 17, 23)
    np.testing.assert_allclose(image_edge[:, 0].numpy(), ref, atol=1e-6)
    assert float(image_edge.min()) >= 0 and float(image_edge.max()) <= 1


def test_mask_edge_equals_scipy_inner_boundary() -> None:
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(4, 1, 15, 19, generator=g) > 0.4).float()
    _, mask_edge = edge_targets(torch.rand(4, 3, 15, 19), masks)
    m = masks[:, 0].numpy().astype(bool)
    ref = np.stack([mi & ~ndimage.binary_erosion(mi, structure=CROSS, border_value=1) for mi in m])
    assert mask_edge.dtype == torch.long
    np.testing.assert_array_equal(mask_edge.numpy(), ref.astype(np.int64))


def test_mask_edge_of_a_square() -> None:
    mask = torch.zeros(1, 1, 6, 6)
    mask[0, 0, 1:5, 1:5] = 1
    _, edge = edge_targets(torch.zeros(1, 3, 6, 6), mask)
    expected = torch.zeros(6, 6, dtype=torch.long)
    expected[1:5, 1:5] = 1
    expected[2:4, 2:4] = 0  # the 2x2 interior survives erosion
    assert torch.equal(edge[0], expected)


def test_loss_equals_hand_computed_value() -> None:
    # one pixel image (B=1, H=W=1): logits and targets chosen so each term is easy to write down
    out = MTSEOutput(
        mask_logits=torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1),  # p(tampered) = 3/4
        mask_edge_logits=torch.tensor([0.0, 0.0]).view(1, 2, 1, 1),  # p = 1/2
        image_edge=torch.tensor([0.5]).view(1, 1, 1, 1),
    )
    mask = torch.tensor([[[1]]])
    mask_edge = torch.tensor([[[0]]])
    image_edge = torch.tensor([0.1]).view(1, 1, 1, 1)
    terms = MTSELoss()(out, mask, mask_edge, image_edge)
    ce_mask = -math.log(0.75)
    ce_edge = math.log(2.0)
    mse = 0.4**2
    assert math.isclose(float(terms["mask"]), ce_mask, rel_tol=1e-6)
    assert math.isclose(float(terms["mask_edge"]), ce_edge, rel_tol=1e-6)
    assert math.isclose(float(terms["image_edge"]), mse, rel_tol=1e-5)
    assert math.isclose(float(terms["loss"]), ce_mask + 0.2 * ce_edge + 0.8 * mse, rel_tol=1e-6)


def test_paired_augmentation_keeps_masks_aligned_and_binary() -> None:
    torch.manual_seed(0)
    images = torch.zeros(4, 3, 32, 32)
    masks = torch.zeros(4, 1, 32, 32)
    images[:, :, 8:20, 4:12] = 1.0
    masks[:, :, 8:20, 4:12] = 1.0
    aug = PairedAugmentation([K.RandomHorizontalFlip(p=1.0), K.RandomCrop((24, 24), p=1.0)])
    out_images, out_masks = aug(images, masks)
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    # the white square moved together with its mask (flip + integer crop: exact)
    assert out_masks.shape == (4, 1, 24, 24)
    assert torch.equal((out_images[:, :1] > 0.5).float(), out_masks)
    # an empty augmentation is the identity
    same_images, same_masks = PairedAugmentation([])(images, masks)
    assert same_images is images and same_masks is masks
