"""MTSE-Net architecture: parameter count, shapes at several sizes, gradients, widths from the spec."""

from __future__ import annotations

import pytest
import torch

from forgery.losses.mtse import MTSELoss
from forgery.losses.targets import edge_targets
from forgery.models.mtse_net import MTSENet, MTSEOutput

# The official model reports 3,940,800 parameters, 1,056 of which belong to a 1x1 conv (32->32 + bias) that
# its forward never uses; this implementation leaves that layer out.
EXPECTED_PARAMS = 3_939_744


def test_parameter_count() -> None:
    net = MTSENet(width=32)
    assert sum(p.numel() for p in net.parameters()) == EXPECTED_PARAMS
    assert EXPECTED_PARAMS + 32 * 32 + 32 == 3_940_800


def test_spec_widths() -> None:
    net = MTSENet(width=32)
    # label-mask stream: M1 3->32, M2 (32+32)->64, M3 (64+32)->128, M4 (128+32)->256, M5 (256+32)->256
    convs = [blk[0] for blk in net.mask_enc]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 32),
        (64, 64),
        (96, 128),
        (160, 256),
        (288, 256),
    ]
    # fused decoder widths at levels 1..4 (SEAM input) and the 3x3 conv after it
    assert [se.fc1.in_features for se in net.seam] == [96, 128, 192, 320]
    assert [blk[0].out_channels for blk in net.fuse] == [32, 64, 128, 256]
    assert all(se.fc1.bias is None and se.fc1.out_features == se.fc1.in_features // 16 for se in net.seam)
    # low-level convs: 1x1/s1, 2x2/s2, 4x4/s4, 8x8/s8, no BN/activation
    assert [(c.kernel_size, c.stride) for c in net.low_level] == [((k, k), (k, k)) for k in (1, 2, 4, 8)]
    # heads: 3x3 convs without bias
    for head, out_ch in ((net.mask_head, 2), (net.mask_edge_head, 2), (net.image_edge_head, 1)):
        assert head.kernel_size == (3, 3) and head.bias is None and head.out_channels == out_ch
    # FAL: BN only at the first level; decoder FALs at levels 1..3 only and one at the bottleneck (official)
    assert [any(isinstance(m, torch.nn.BatchNorm2d) for m in f.modules()) for f in net.fal] == [True] + [
        False
    ] * 3
    assert len(net.edge_dec_fal) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.bottleneck_fal.modules())


@pytest.mark.parametrize("size", [256, 384, 512])
def test_forward_shapes(size: int) -> None:
    net = MTSENet().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, size, size))
    assert isinstance(out, MTSEOutput)
    assert out.mask_logits.shape == (1, 2, size, size)
    assert out.mask_edge_logits.shape == (1, 2, size, size)
    assert out.image_edge.shape == (1, 1, size, size)
    assert torch.isfinite(out.mask_logits).all() and torch.isfinite(out.image_edge).all()
    prob = out.mask_prob
    assert prob.shape == (1, size, size) and float(prob.min()) >= 0 and float(prob.max()) <= 1


def test_non_square_and_bad_size() -> None:
    net = MTSENet(width=8).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 96)).mask_logits.shape == (2, 2, 64, 96)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.rand(1, 3, 60, 64))


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    net = MTSENet(width=32)
    images = torch.rand(2, 3, 32, 32)
    masks = (torch.rand(2, 1, 32, 32) > 0.7).float()
    image_edge, mask_edge = edge_targets(images, masks)
    terms = MTSELoss()(net(images), masks[:, 0].long(), mask_edge, image_edge)
    terms["loss"].backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert all(float(p.grad.abs().sum()) > 0 for n, p in net.named_parameters() if "bias" not in n)
