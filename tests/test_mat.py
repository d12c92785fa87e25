"""MAT network, RIL / match / combined losses and AGDA.

Modules: forgery.models.mat, forgery.losses.mat, forgery.augment.agda.

The default tf_efficientnet_b4 MAT has 18,822,482 parameters: backbone 17,548,616 (timm B4 without its
1792x1000 classifier); attention 231,528 (3x3 conv 160->160 + BN, 1x1 conv 160->4 + BN); texture v2 352,672
(C = 32, M = 4); local projection 98,816; global projection 459,008; classifier 131,842.
Most tests use resnet18 at 64 px (shallow 64 ch 16x16, attention 256 ch 4x4, final 512 ch 2x2).
"""

from __future__ import annotations

import ast
import inspect
import io
import math
import os
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from forgery.augment.agda import AGDA, agda_map_weights, soft_threshold
from forgery.losses.mat import AGDAMatchLoss, MATLoss, RegionalIndependenceLoss
from forgery.models.mat import (
    MAT,
    AttentionModule,
    BilinearAttentionPooling,
    HeadDropout,
    TextureEnhanceV1,
    TextureEnhanceV2,
    standardize_spatial,
)

TINY = "resnet18"
KEEP_SCALE = torch.tensor(1 / 0.75).item()  # 1 / (1 - p) in float32


@pytest.fixture(scope="module")
def tiny_mat() -> MAT:
    torch.manual_seed(0)
    return MAT(backbone=TINY)


# ----------------------------------------------------------------------------------------------- network


def test_b4_parameter_count_and_taps() -> None:
    model = MAT()
    assert sum(p.numel() for p in model.parameters()) == 18_822_482
    assert sum(p.numel() for p in model.backbone.parameters()) == 17_548_616
    info = model.backbone.feature_info
    shallow, attention = model.tap_indices
    assert (info[shallow]["reduction"], info[shallow]["num_chs"]) == (4, 32)
    assert (info[attention]["reduction"], info[attention]["num_chs"]) == (16, 160)
    assert model.backbone.num_features == model.final_channels == 1792
    assert (model.shallow_channels, model.attention_channels, model.ril_channels) == (32, 160, 32)
    baseline = MAT(mode="baseline")
    assert sum(p.numel() for p in baseline.parameters()) == 17_548_616 + 1792 * 2 + 2


@pytest.mark.slow
def test_b4_forward_380() -> None:
    torch.manual_seed(0)
    model = MAT().train()
    images = torch.rand(2, 3, 380, 380) * 2 - 1
    shallow, deep, final = model.forward_backbone(images)
    assert (
        shallow.shape == (2, 32, 95, 95)
        and deep.shape == (2, 160, 24, 24)
        and final.shape == (2, 1792, 12, 12)
    )
    out = model(images)
    assert out.logits.shape == (2, 2)
    assert out.attention_maps.shape == (2, 4, 24, 24)
    assert out.feature_matrix.shape == out.ril_features.shape == (2, 4, 32)
    assert torch.isfinite(out.logits).all()
    # the 2-pixel frame of the 24x24 maps is zero, the inside positive (ELU + 1 > 0)
    assert out.attention_maps[..., :2, :].eq(0).all() and out.attention_maps[..., -2:].eq(0).all()
    assert out.attention_maps[..., 2:-2, 2:-2].gt(0).all()
    MATLoss(4, 32)(out, torch.tensor([0, 1]))["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_forward_shapes_and_normalisation(tiny_mat: MAT) -> None:
    model = tiny_mat.train()
    torch.manual_seed(1)
    out = model(torch.randn(3, 3, 64, 64))
    assert out.logits.shape == (3, 2)
    assert out.attention_maps.shape == (3, 4, 4, 4)
    assert out.feature_matrix.shape == out.ril_features.shape == (3, 4, 64)
    assert out.dropout_mask.shape == (3, 4)
    for t in (out.logits, out.attention_maps, out.feature_matrix, out.ril_features):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(out.feature_matrix.norm(dim=-1), torch.ones(3, 4))
    torch.testing.assert_close(out.ril_features.norm(dim=-1), torch.ones(3, 4))
    assert set(out.dropout_mask.unique().tolist()) <= {0.0, KEEP_SCALE}


def test_eval_is_deterministic_without_head_dropout(tiny_mat: MAT) -> None:
    model = tiny_mat.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(images), model(images)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.dropout_mask, torch.ones(2, 4))


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = MAT(backbone=TINY).train()
    for module in model.modules():  # timm zero-inits each residual block's last BN, blocking its branch
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    criterion = MATLoss(model.num_attentions, model.ril_channels)
    out = model(torch.randn(4, 3, 64, 64))
    terms = criterion(out, torch.tensor([0, 1, 0, 1]))
    assert set(terms) == {"ce", "ril", "loss"}
    torch.testing.assert_close(terms["loss"], terms["ce"] + 0.5 * terms["ril"])
    terms["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("backbone", "shallow", "attention", "final"),
    [
        ("efficientnet_b0", 24, 112, 1280),
        ("mobilenetv3_small_050", 8, 24, 288),
        ("convnext_atto", 40, 160, 320),
    ],
)
def test_other_timm_backbones(backbone: str, shallow: int, attention: int, final: int) -> None:
    model = MAT(backbone=backbone, texture="v1").eval()
    info = model.backbone.feature_info
    assert [info[i]["reduction"] for i in model.tap_indices] == [4, 16]
    assert (model.shallow_channels, model.attention_channels, model.final_channels) == (
        shallow,
        attention,
        final,
    )
    with torch.no_grad():
        s, d, f = model.forward_backbone(torch.randn(1, 3, 64, 64))
        out = model(torch.randn(2, 3, 64, 64))
    assert s.shape == (1, shallow, 16, 16) and d.shape == (1, attention, 4, 4) and f.shape == (1, final, 2, 2)
    # v1 keeps the dense block's 4C channels in the feature matrix, D keeps C
    assert out.feature_matrix.shape == (2, 4, 4 * shallow) and out.ril_features.shape == (2, 4, shallow)


def test_official_backbone_recipe_batchnorm_and_drop_path() -> None:
    """Backbone BN momentum 0.01 / eps 1e-3 (official TF-convention 0.99), head BN PyTorch defaults; drop
    path 0.2 * i / n_blocks on the blocks with a skip (the official drop_connect schedule)."""
    net = MAT(backbone="tf_efficientnet_b0")
    backbone_bn = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(backbone_bn) == 49 and {(m.momentum, m.eps) for m in backbone_bn} == {(0.01, 1e-3)}
    head_bn = [
        m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and "backbone" not in n
    ]
    assert head_bn and {(m.momentum, m.eps) for m in head_bn} == {(0.1, 1e-5)}
    blocks = [b for stage in net.backbone.blocks for b in stage]
    rates = [b.drop_path.drop_prob if b.has_skip else 0.0 for b in blocks]
    expected = [0.2 * i / len(blocks) if b.has_skip else 0.0 for i, b in enumerate(blocks)]
    assert (
        len(blocks) == 16 and rates == pytest.approx(expected) and max(rates) == pytest.approx(0.2 * 14 / 16)
    )
    timm_defaults = MAT(backbone=TINY, bn_momentum=None, bn_eps=None, drop_path_rate=0.0)
    assert {m.momentum for m in timm_defaults.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {
        0.1
    }


def test_bad_arguments_raise_clear_errors(tiny_mat: MAT) -> None:
    with pytest.raises(ValueError, match=r"MAT: images must be \(B, 3, H, W\), got \(2, 1, 64, 64\)"):
        tiny_mat(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"has no stage with stride 64; strides are \[2, 4, 8, 16, 32\]"):
        MAT(backbone=TINY, attention_stride=64)
    with pytest.raises(ValueError, match="pretrained=True needs weights_path"):
        MAT(backbone=TINY, pretrained=True)
    with pytest.raises(ValueError, match="texture must be 'v1' or 'v2', got 'v3'"):
        MAT(backbone=TINY, texture="v3")


def test_weights_path_loads_local_file(tmp_path) -> None:
    torch.manual_seed(3)
    source = MAT(backbone=TINY, mode="baseline")
    state = dict(source.backbone.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # a full timm checkpoint's classifier is ignored
    torch.save(state, tmp_path / "r18.pth")
    model = MAT(backbone=TINY, pretrained=True, weights_path=str(tmp_path / "r18.pth"))
    for name, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, rtol=0, atol=0)

    del state["conv1.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(
        ValueError, match=r"broken.pth lacks 1 backbone weights \(first: \['conv1.weight'\]\)"
    ):
        MAT(backbone=TINY, weights_path=str(tmp_path / "broken.pth"))
    with pytest.raises(FileNotFoundError, match="backbone weights file not found: .*absent.pth"):
        MAT(backbone=TINY, weights_path=str(tmp_path / "absent.pth"))


def test_baseline_mode_and_load_matching() -> None:
    torch.manual_seed(4)
    baseline = MAT.backbone_classifier(backbone=TINY).eval()
    assert baseline.mode == "baseline"
    with torch.no_grad():
        out = baseline(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 2) and out.attention_maps is None and out.ril_features is None
    assert set(baseline.state_dict()) - {"head.weight", "head.bias"} == set(
        MAT(backbone=TINY).backbone.state_dict(prefix="backbone.")
    )

    model = MAT(backbone=TINY)
    ckpt = {f"model.{k}": v for k, v in baseline.state_dict().items()}
    ckpt["model.classifier.0.weight"] = torch.zeros(3, 3)  # same name, other shape: skipped
    loaded, skipped = model.load_matching(ckpt, prefix="model.")
    assert sorted(loaded) == sorted(k for k in baseline.state_dict() if k.startswith("backbone."))
    assert sorted(skipped) == ["model.classifier.0.weight", "model.head.bias", "model.head.weight"]
    for name in loaded:
        torch.testing.assert_close(model.state_dict()[name], baseline.state_dict()[name], rtol=0, atol=0)


def test_convert_sync_batchnorm_keeps_timm_activations() -> None:
    torch.manual_seed(6)
    model = MAT(backbone="efficientnet_b0").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(images).logits
        assert model.convert_sync_batchnorm() is model
        after = model(images).logits
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    torch.testing.assert_close(after, before)  # eval: same running statistics and activations


# ------------------------------------------------------------------------------------------------- blocks


def test_attention_module_border_and_positivity() -> None:
    module = AttentionModule(8, 3, border=2).eval()
    maps = module(torch.randn(2, 8, 24, 24))
    assert maps.shape == (2, 3, 24, 24)
    frame = torch.ones(24, 24, dtype=torch.bool)
    frame[2:-2, 2:-2] = False
    assert maps[..., frame].eq(0).all() and maps[..., ~frame].gt(0).all()
    # at 12x12 the 24x24 mask is nearest-resized: rows/cols 2i are sampled, so a 1-pixel frame remains
    maps = module(torch.randn(1, 8, 12, 12))
    assert maps[..., 0, :].eq(0).all() and maps[..., -1, :].eq(0).all() and maps[..., 1:-1, 1:-1].gt(0).all()


def test_bap_hand_values() -> None:
    bap = BilinearAttentionPooling()
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, C=2, 2, 2)
    maps = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, M=2, 2, 2)
    raw = bap(features, maps, norm="none")
    # map 0: (1 + 4, 0 + 1) = (5, 1); map 1: (1 + 2 + 3 + 4, 0 + 1 + 0 + 1) = (10, 2)
    torch.testing.assert_close(raw, torch.tensor([[[5.0, 1.0], [10.0, 2.0]]]))
    # L2: (5, 1) / sqrt(26) for both maps
    expected = torch.tensor([5.0, 1.0]) / math.sqrt(26)
    torch.testing.assert_close(bap(features, maps), expected.expand(1, 2, 2))
    # attention-weighted mean: (5, 1) / 2 and (10, 2) / 4
    torch.testing.assert_close(bap(features, maps, norm="mean"), torch.tensor([[[2.5, 0.5], [2.5, 0.5]]]))
    # per-map (B, M, C, H, W) features; attention is resized bilinearly to the feature size
    torch.manual_seed(0)
    per_map = torch.randn(3, 4, 5, 8, 8)
    out = bap(per_map, torch.rand(3, 4, 4, 4))
    assert out.shape == (3, 4, 5)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 4))
    resized = F.interpolate(torch.ones(1, 1, 2, 2), size=(8, 8), mode="bilinear", align_corners=True)
    torch.testing.assert_close(
        bap(per_map[:1, :1], torch.ones(1, 1, 2, 2), "none"),
        torch.einsum("bmhw,bmchw->bmc", resized, per_map[:1, :1]),
    )


def test_bap_is_float32_and_safe_for_empty_maps_in_half_precision() -> None:
    features = torch.arange(8, dtype=torch.float16).view(1, 2, 2, 2)  # channel means 1.5 and 5.5
    maps = torch.zeros(1, 1, 2, 2, dtype=torch.float16)  # every map head-dropped
    pooled = BilinearAttentionPooling()(features, maps, norm="mean")
    # all weights equal 1e-8 (kept in float32) -> the plain spatial average instead of 0 / 0
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, torch.tensor([[[1.5, 5.5]]]))


def test_forward_under_bfloat16_autocast(tiny_mat: MAT) -> None:
    model = tiny_mat.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
    assert out.feature_matrix.dtype == out.ril_features.dtype == torch.float32
    assert torch.isfinite(out.logits.float()).all()
    torch.testing.assert_close(out.feature_matrix.norm(dim=-1), torch.ones(2, 4))


def test_head_dropout() -> None:
    drop = HeadDropout(0.25).train()
    x = torch.ones(10_000, 4, 3)
    y, mask = _seeded(0, drop, x)
    assert mask.shape == (10_000, 4)
    assert set(mask.unique().tolist()) == {0.0, KEEP_SCALE}
    torch.testing.assert_close(y, mask.unsqueeze(-1).expand_as(x))
    assert abs(mask.gt(0).float().mean().item() - 0.75) < 0.01  # 4 sigma = 0.009 for 40,000 draws
    _, again = _seeded(0, drop, x)
    torch.testing.assert_close(mask, again, rtol=0, atol=0)
    # per sample: rows differ (not one mask shared by the batch)
    assert mask[:100].unique(dim=0).shape[0] > 1
    drop.eval()
    y, mask = drop(x)
    torch.testing.assert_close(mask, torch.ones(10_000, 4))
    assert y is not x and torch.equal(y, x)


def test_texture_enhancement_shapes_and_detached_gate() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 8, 16, 16)
    maps = torch.rand(2, 4, 4, 4, requires_grad=True)
    out, pooled = TextureEnhanceV2(8, 4)(features, maps)
    assert out.shape == (2, 4, 8, 16, 16) and pooled.shape == (2, 8, 4, 4)
    assert out.ge(0).all()  # ends with ReLU
    out.sum().backward()
    assert maps.grad is None  # the gate uses detached attention
    out, pooled = TextureEnhanceV1(8, 4)(features, maps)
    assert out.shape == (2, 32, 16, 16) and pooled.shape == (2, 8, 4, 4)
    # v1's D is the local average of the raw features: top-left 4x4 block mean
    torch.testing.assert_close(pooled[:, :, 0, 0], features[:, :, :4, :4].mean(dim=(2, 3)))


def test_standardize_spatial() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # mean 2.5, unbiased std sqrt(5/3) = 1.290994
    expected = (x - 2.5) / (math.sqrt(5 / 3) + 1e-8)
    torch.testing.assert_close(standardize_spatial(x), expected)


# ------------------------------------------------------------------------------------------------- losses

V_REAL = [[1.0, 0.0], [0.0, 1.0]]
V_FAKE = [[0.3, 0.2], [0.1, 0.4]]


def _ril_batch(requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([V_REAL, V_FAKE], requires_grad=requires_grad), torch.tensor([0, 1])


def test_ril_official_hand_values() -> None:
    ril = RegionalIndependenceLoss(2, 2).train()
    V, y = _ril_batch(requires_grad=True)
    terms = ril.forward_terms(V, y)
    # c' = 0 + 0.05 * (V_real * 1 + V_fake * 0) / 2 (full batch of 2, real samples only) = 0.025 * I
    expected_centers = torch.tensor([[0.025, 0.0], [0.0, 0.025]])
    torch.testing.assert_close(ril.centers, expected_centers)
    torch.testing.assert_close(terms["centers"].detach(), expected_centers)
    # real:  ||V - c'||_F = 0.975 * sqrt(2) = 1.3788582; relu(1.3788582 - 0.2) = 1.1788582
    # fake:  ||V - c'||_F = sqrt(0.275^2 + 0.2^2 + 0.1^2 + 0.375^2) = sqrt(0.26625) = 0.5159942
    #        margin -0.8: relu(-0.5159942 + 0.8) = 0.2840058
    # intra = (1.1788582 + 0.2840058) / 2 = 0.7314320
    torch.testing.assert_close(terms["intra"], torch.tensor(0.7314320), atol=1e-6, rtol=0)
    # inter: ||c'_0 - c'_1|| = ||(0.025, -0.025)|| = 0.0353553; relu(0.8 - 0.0353553) / M / alpha
    #        = 0.7646447 / 2 / 0.05 = 7.6464466
    torch.testing.assert_close(terms["inter"], torch.tensor(7.6464466), atol=1e-5, rtol=0)
    # the centers carry gradient: inter = 10 * (0.8 - 0.025 * ||V_real,0 - V_real,1||), so
    # d inter / d V_real,0 = -0.25 * (1, -1) / sqrt(2) and the fake sample gets none
    terms["inter"].backward()
    g = 0.25 / math.sqrt(2)
    torch.testing.assert_close(V.grad, torch.tensor([[[-g, g], [g, -g]], [[0.0, 0.0], [0.0, 0.0]]]))

    # second call starts from the stored centers: c'' = c' + 0.05 * (V_real - c') / 2 = 0.049375 * I
    ril(V.detach(), y)
    torch.testing.assert_close(ril.centers, torch.tensor([[0.049375, 0.0], [0.0, 0.049375]]))
    total = RegionalIndependenceLoss(2, 2).train()(V.detach(), y)
    torch.testing.assert_close(total, torch.tensor(0.7314320 + 7.6464466), atol=1e-5, rtol=0)


def test_ril_update_only_in_training() -> None:
    V, y = _ril_batch()
    ril = RegionalIndependenceLoss(2, 2).eval()
    value = ril(V, y)
    torch.testing.assert_close(ril.centers, torch.zeros(2, 2))
    torch.testing.assert_close(value, torch.tensor(0.7314320 + 7.6464466), atol=1e-5, rtol=0)
    ril.train()
    ril(V, y, update=False)
    torch.testing.assert_close(ril.centers, torch.zeros(2, 2))
    # an all-fake batch leaves the official centers unchanged (update from real samples only)
    ril(V, torch.tensor([1, 1]))
    torch.testing.assert_close(ril.centers, torch.zeros(2, 2))


def test_ril_paper_variant_matches_numpy() -> None:
    V, y = _ril_batch()
    terms = RegionalIndependenceLoss(2, 2, "paper").train().forward_terms(V, y)
    v = V.numpy().astype(np.float64)
    centers = 0.05 * v.mean(axis=0)  # all samples
    d = np.linalg.norm(v - centers, axis=-1)  # per map (B, M)
    margins = np.array([0.05, 0.1])[y.numpy()][:, None]
    intra = np.maximum(d - margins, 0).mean()  # 0.5853362
    inter = max(0.2 - np.linalg.norm(centers[0] - centers[1]), 0) / 2 / 0.05  # 1.5757359
    assert intra == pytest.approx(0.5853362, abs=1e-6) and inter == pytest.approx(1.5757359, abs=1e-6)
    assert terms["intra"].item() == pytest.approx(intra, abs=1e-6)
    assert terms["inter"].item() == pytest.approx(inter, abs=1e-5)


def test_ril_alpha_decay_and_state_dict_round_trip() -> None:
    ril = RegionalIndependenceLoss(2, 2).train()
    ril(*_ril_batch())
    ril.on_epoch_end()
    assert ril.alpha.item() == pytest.approx(0.045, abs=1e-8)
    state = ril.state_dict()
    assert set(state) == {"centers", "alpha", "decayed_epochs"}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = RegionalIndependenceLoss(2, 2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(restored.centers, torch.tensor([[0.025, 0.0], [0.0, 0.025]]))
    assert restored.alpha.item() == pytest.approx(0.045, abs=1e-8)
    # the loss inside MATLoss is saved with it
    assert set(MATLoss(2, 2).state_dict()) == {"ril.centers", "ril.alpha", "ril.decayed_epochs"}


def test_ril_sync_epoch_is_resume_safe() -> None:
    ril = RegionalIndependenceLoss(2, 2)
    ril.sync_epoch(3)
    ril.sync_epoch(3)  # idempotent within an epoch
    assert ril.alpha.item() == pytest.approx(0.05 * 0.9**3) and int(ril.decayed_epochs) == 3
    resumed = RegionalIndependenceLoss(2, 2)
    resumed.load_state_dict(ril.state_dict())  # e.g. a checkpoint saved mid-epoch 3
    resumed.sync_epoch(3)
    assert resumed.alpha.item() == pytest.approx(0.05 * 0.9**3)
    resumed.sync_epoch(4)
    assert resumed.alpha.item() == pytest.approx(0.05 * 0.9**4)


def test_ril_gradient_finite_with_equal_centers() -> None:
    V = torch.zeros(2, 3, 4, requires_grad=True)
    loss = RegionalIndependenceLoss(3, 4).train()(V, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(V.grad).all()
    # all centers at 0: inter = 3 pairs * relu(0.8 - 0) / 3 / 0.05 = 16; intra = (0 + relu(0 + 0.8)) / 2 = 0.4
    assert loss.item() == pytest.approx(16.4, abs=1e-5)


def test_ril_bad_input_messages() -> None:
    ril = RegionalIndependenceLoss(2, 2)
    with pytest.raises(ValueError, match=r"features must be \(B, 2, 2\), got \(2, 3, 2\)"):
        ril(torch.zeros(2, 3, 2), torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match=r"labels must be a \(B,\) = \(2,\) long tensor, got torch.float32 \(2,\)"
    ):
        ril(torch.zeros(2, 2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="variant must be one of"):
        RegionalIndependenceLoss(2, 2, "other")


def _ril_ddp_worker(rank: int, world: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ril = RegionalIndependenceLoss(2, 2).train()
    V = torch.full((2, 2, 2), float(rank + 1))  # rank 0: ones, rank 1: twos, all real
    ril(V, torch.tensor([0, 0]))
    torch.save(ril.centers, os.path.join(results, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ril_center_update_averages_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    # simulate a second rank whose batch-mean step (V - c) is 2.0 everywhere: the differentiable SUM
    # all-reduce adds it, then / world size 2
    import forgery.losses.mat as mat_losses

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(mat_losses.dist_nn, "all_reduce", lambda tensor: tensor + 2.0)
    ril = RegionalIndependenceLoss(2, 2).train()
    ril(*_ril_batch())
    # this rank's step: 0.5 * I (c' = c + 0.05 * step = 0.025 * I alone); averaged: 0.05 * (0.5 * I + 2) / 2
    torch.testing.assert_close(ril.centers, torch.tensor([[0.0625, 0.05], [0.05, 0.0625]]))


@pytest.mark.slow
def test_ril_centers_all_reduced_across_ranks(tmp_path) -> None:
    mp.spawn(_ril_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    # rank r alone: c' = 0.05 * (r + 1); averaged: 0.05 * (1 + 2) / 2 = 0.075 on both ranks
    for rank in range(2):
        centers = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(centers, torch.full((2, 2), 0.075))


def test_match_loss_hand_value() -> None:
    V = torch.zeros(2, 2, 2)
    V_agda = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [6.0, 8.0]]])
    selected = torch.tensor([0, 1])
    # distances (5, 1; 2, 10); chosen maps (0 of sample 0, 1 of sample 1) masked: (0 + 1 + 2 + 0) / 4 = 0.75
    assert AGDAMatchLoss()(V, V_agda, selected).item() == pytest.approx(0.75)


def test_mat_loss_with_agda_pass(tiny_mat: MAT) -> None:
    torch.manual_seed(5)
    model = tiny_mat.train()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    out = model(images)
    mixed, selected, _ = _seeded(0, AGDA(), images, out.attention_maps)
    out_agda = model(mixed)
    for update_on_agda in (True, False):
        criterion = MATLoss(4, model.ril_channels).train()
        terms = criterion(out, labels, out_agda, selected, update_centers_on_agda=update_on_agda)
        assert set(terms) == {"ce", "ril", "agda_ce", "match", "loss"}
        expected = terms["ce"] + 0.5 * terms["ril"] + terms["agda_ce"] + 0.1 * terms["match"]
        torch.testing.assert_close(terms["loss"], expected)
        torch.testing.assert_close(terms["agda_ce"], F.cross_entropy(out_agda.logits, labels))
        V, V_agda = out.ril_features.detach(), out_agda.ril_features.detach()
        real = (labels == 0).float().view(-1, 1, 1)
        centers = 0.05 * (V * real).mean(0)  # clean pass
        if update_on_agda:
            centers = centers + 0.05 * ((V_agda - centers) * real).mean(0)  # AGDA pass
        torch.testing.assert_close(criterion.ril.centers, centers)
    terms["loss"].backward()
    with pytest.raises(ValueError, match="MATLoss: an AGDA pass needs agda_selected"):
        criterion(out, labels, out_agda, None)
    with pytest.raises(ValueError, match=r"MATLoss: labels must be a \(B,\) = \(4,\) long tensor"):
        criterion(out, labels[:2])


def test_mat_loss_baseline_output_is_ce_only() -> None:
    from forgery.models.mat import MATOutput

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    terms = MATLoss(4, 32)(MATOutput(logits=logits), torch.tensor([0, 1]))
    # CE = (log(1 + e^-2) + log(1 + e^-1)) / 2
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert set(terms) == {"ce", "loss"} and terms["loss"].item() == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------------------------------- AGDA


def test_soft_threshold_hand_values() -> None:
    a = torch.tensor([0.0, 0.5, 1.0])
    # t = 0.5, z = 4: bottom = sigmoid(-2) = 0.1192029
    # a = 0.5: (0.5 - 0.1192029) / (1 - 0.1192029) = 0.4323324
    # a = 1:   (0.8807971 - 0.1192029) / 0.8807971 = 0.8646647
    torch.testing.assert_close(soft_threshold(a, 0.5, 4.0), torch.tensor([0.0, 0.4323324, 0.8646647]))


def test_agda_map_choice_follows_sqrt_weights() -> None:
    # map sums 0, 3, 8, 15 -> weights sqrt(sum + 1) = 1, 2, 3, 4 -> probabilities 0.1, 0.2, 0.3, 0.4
    maps = torch.zeros(4, 2, 2)
    for m, total in enumerate((0.0, 3.0, 8.0, 15.0)):
        maps[m] = total / 4
    torch.testing.assert_close(agda_map_weights(maps[None]), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    B = 4000
    images = torch.zeros(B, 3, 16, 16)
    _, selected, _ = _seeded(0, AGDA(), images, maps.expand(B, -1, -1, -1))
    assert selected.dtype == torch.long and selected.shape == (B,)
    freq = torch.bincount(selected, minlength=4).float() / B
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03, rtol=0)  # ~4 sigma


def test_agda_mixing_values() -> None:
    agda = AGDA(threshold=(0.5, 0.5), zoom=(4.0, 4.0))
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    maps = torch.zeros(2, 1, 8, 8)
    maps[:, 0, :, 5:] = 2.0  # right columns only; the bilinear upsample keeps the left part exactly 0
    mixed, selected, mask = _seeded(1, agda, images, maps)
    assert mixed.shape == images.shape and mask.shape == (2, 1, 32, 32) and selected.tolist() == [0, 0]
    zero = mask.eq(0).expand_as(images)
    assert zero.any() and torch.equal(mixed[zero], images[zero])
    # the map's max is 1 after normalisation -> soft_threshold(1, 0.5, 4) = 0.8646647
    torch.testing.assert_close(mask.amax(dim=(2, 3)).flatten(), torch.full((2,), 0.8646647))
    assert mask.ge(0).all() and not torch.equal(mixed, images)
    # same seed -> same output
    again = _seeded(1, agda, images, maps)
    torch.testing.assert_close(again[0], mixed, rtol=0, atol=0)


def test_agda_degrade_keeps_constant_images_without_noise() -> None:
    images = torch.full((2, 3, 32, 32), 0.3)
    torch.testing.assert_close(AGDA(noise_std=0.0).degrade(images), images)
    noisy = _seeded(0, AGDA(noise_std=0.1).degrade, images)
    assert 0.0 < (noisy - images).abs().max().item() < 0.5


def test_agda_is_batched_without_grad() -> None:
    for method in (AGDA.forward, AGDA.degrade):
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While, ast.comprehension))]
    agda = AGDA()
    for B in (1, 64):
        images = torch.rand(B, 3, 32, 32, requires_grad=True)
        maps = torch.rand(B, 4, 4, 4, requires_grad=True)
        start = time.perf_counter()
        mixed, selected, mask = agda(images, maps)
        assert mixed.shape == (B, 3, 32, 32) and selected.shape == (B,) and mask.shape == (B, 1, 32, 32)
        assert not mixed.requires_grad
        assert time.perf_counter() - start < 2.0


def _seeded(seed: int, fn, *args):
    """``fn(*args)`` with torch's global RNG seeded (as training's step_rng does), state restored after."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn(*args)
