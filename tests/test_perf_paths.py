"""Speed paths keep the math: channels-last MAT, the loader and backend defaults for GPUs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch.utils.data import TensorDataset

from forgery.cli import config_dir
from forgery.cli.bench import compose_groups
from forgery.data.samplers import GPU_PREFETCH_FACTOR, make_loader
from forgery.models.mat import MAT, TextureEnhanceV2
from forgery.modules import build_module
from forgery.modules.faces import mat_channels_last
from forgery.utils import resolvers
from forgery.utils.backends import BackendFlags

TINY = "test_efficientnet"


def _fake_trainer(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def _assert_same_grads(grads: list[torch.Tensor], ref: list[torch.Tensor], rel: float = 1e-5) -> None:
    a, b = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref])
    assert ((a - b).norm() / b.norm()).item() < rel


def test_texture_enhancement_channels_last_equals_contiguous() -> None:
    torch.manual_seed(0)
    te = TextureEnhanceV2(8, 4).train()
    features = torch.randn(2, 8, 20, 20, requires_grad=True)
    maps = torch.rand(2, 4, 5, 5)
    out, pooled = te(features, maps)
    (out.square().sum() + pooled.sum()).backward()
    grads = [p.grad.clone() for p in te.parameters()]
    te.zero_grad()
    te_cl = te.to(memory_format=torch.channels_last)
    f_cl = features.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out_cl, pooled_cl = te_cl(f_cl, maps)
    (out_cl.square().sum() + pooled_cl.sum()).backward()
    torch.testing.assert_close(out_cl, out)
    torch.testing.assert_close(pooled_cl, pooled)
    torch.testing.assert_close(f_cl.grad, features.grad, rtol=1e-4, atol=1e-4)
    # summation order differs between the layouts' kernels (and conv biases before a BatchNorm have a
    # zero gradient up to rounding): compare all the gradients as one vector
    _assert_same_grads([p.grad for p in te_cl.parameters()], grads)


def test_texture_gate_from_given_upsampled_maps_equals_own() -> None:
    torch.manual_seed(0)
    te = TextureEnhanceV2(8, 4).eval()
    features, maps = torch.randn(2, 8, 20, 20), torch.rand(2, 4, 5, 5)
    up = torch.nn.functional.interpolate(maps, size=(20, 20), mode="bilinear", align_corners=True)
    torch.testing.assert_close(te(features, maps, upsampled=up)[0], te(features, maps)[0])


def test_mat_channels_last_forward_and_backward_match() -> None:
    torch.manual_seed(0)
    net = MAT(backbone=TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = net(x)
    ref.logits.sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad()
    net = net.to(memory_format=torch.channels_last)
    out = net(x.contiguous(memory_format=torch.channels_last))
    out.logits.sum().backward()
    for name in ("logits", "attention_maps", "feature_matrix", "ril_features"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=1e-4, atol=1e-5)
    _assert_same_grads([p.grad for n, p in net.named_parameters() if n in grads], list(grads.values()))


def test_face_module_channels_last_training_step_same_loss() -> None:
    losses = []
    for cl in (False, True):
        cfg = compose_groups(
            {"model": "mat", "loss": "mat", "augmentation": "agda"},
            [f"model.net.backbone={TINY}", f"model.channels_last={str(cl).lower()}"],
        )
        torch.manual_seed(0)
        module = build_module(cfg["model"], cfg["loss"], cfg["augmentation"])
        assert module.uses_channels_last is cl
        g = torch.Generator().manual_seed(1)
        batch = {"image": torch.rand(2, 3, 64, 64, generator=g), "label": torch.tensor([0, 1])}
        with pytest.warns(UserWarning, match="self.log"):  # no trainer attached
            losses.append(module.training_step(batch, 0))
    assert torch.isfinite(losses[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)


def test_mat_layout_defaults() -> None:
    cfg = compose_groups({"model": "mat", "loss": "mat", "augmentation": "agda"})
    assert cfg["model"]["channels_last"] == "auto" and cfg["model"]["compile"] is False
    assert mat_channels_last("auto", "cpu", "32-true") is True
    assert mat_channels_last("auto", "cpu", "bf16-mixed") is True
    assert mat_channels_last("auto", "cuda", "bf16-mixed") is True
    assert mat_channels_last(False, "cpu", "32-true") is False
    with pytest.raises(Exception, match="channels_last must be true, false or auto, got .yes."):
        build_module({**cfg["model"], "channels_last": "yes"}, cfg["loss"], None)
    mtse = compose_groups({"model": "mtse_net", "loss": "mtse"}, ["model.net.width=4"])
    assert mtse["model"]["channels_last"] is True
    with pytest.raises(Exception, match="channels_last must be true or false, got .maybe."):
        build_module({**mtse["model"], "channels_last": "maybe"}, mtse["loss"], None)


@pytest.mark.parametrize(("device", "pinned", "prefetch"), [("cpu", False, 2), ("cuda", True, 4)])
def test_loader_pins_and_prefetches_for_gpus(device: str, pinned: bool, prefetch: int) -> None:
    data = TensorDataset(torch.arange(8.0))
    loader = make_loader(data, "val", 2, num_workers=1, trainer=_fake_trainer(device))
    assert loader.pin_memory is pinned
    assert loader.prefetch_factor == prefetch and loader.persistent_workers
    assert GPU_PREFETCH_FACTOR == 4
    assert make_loader(data, "val", 2, num_workers=0, pin_memory=True).prefetch_factor is None
    with pytest.raises(ValueError, match="pin_memory must be true, false or auto, got 'yes'"):
        make_loader(data, "val", 2, pin_memory="yes")


def _data_workers(data: str, *overrides: str) -> int:
    """``data.num_workers`` as ``forgery-train data=<data>`` resolves it (``make_cfg`` pins 0 in tests)."""
    args = [f"data={data}", *overrides]
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=args).data.num_workers
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=args).data.num_workers


@pytest.mark.parametrize("cpus", [1, 2, 16])
def test_loader_workers_default_to_at_most_the_usable_cpus(monkeypatch, cpus: int) -> None:
    monkeypatch.setattr(resolvers, "usable_cpus", lambda: cpus)
    assert resolvers.loader_workers(4) == min(4, cpus) and resolvers.loader_workers("0") == 0
    assert _data_workers("casia2", "data.root=/x") == _data_workers("ffpp", "data.root=/x") == min(4, cpus)
    assert _data_workers("splicing_synth") == _data_workers("faces_synth") == min(2, cpus)
    assert _data_workers("casia2", "data.root=/x", "data.num_workers=8") == 8  # a count given is kept


def test_backend_flags_set_tf32_on_cuda_only() -> None:
    before = torch.get_float32_matmul_precision()
    cudnn_before = torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("highest")
        BackendFlags("high").setup(_fake_trainer("cpu"), None, "fit")
        assert torch.get_float32_matmul_precision() == "highest"
        BackendFlags("high").setup(_fake_trainer("cuda"), None, "fit")
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
        torch.backends.cudnn.allow_tf32 = cudnn_before
    with pytest.raises(ValueError, match="float32_matmul_precision must be one of"):
        BackendFlags("tf32")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_gpu_trainer_defaults(make_cfg, monkeypatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolvers.auto_precision() == expected
    cfg = make_cfg("train", ["trainer=gpu"])
    # make_cfg forces CPU for the tests; the GPU choices under it are what trainer=gpu composes
    assert cfg.trainer.precision == expected and cfg.trainer.benchmark is True
    assert cfg.callbacks.backend_flags.float32_matmul_precision == "high"
    assert cfg.data.pin_memory == "auto"


def test_out_of_place_silu_same_outputs_and_no_activation_copies() -> None:
    from torch.profiler import ProfilerActivity, profile

    from forgery.models.layers import out_of_place_silu

    torch.manual_seed(0)
    net = MAT(backbone=TINY).train()
    x = torch.randn(2, 3, 64, 64)

    def run() -> tuple[torch.Tensor, int]:
        torch.manual_seed(1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = net(x)
            out.logits.sum().backward()
        copies = sum(e.count for e in prof.key_averages() if e.key == "aten::copy_")
        return out.logits.detach(), copies

    ref, copies_inplace = run()
    net.zero_grad()
    assert out_of_place_silu(net) > 0 and out_of_place_silu(net) == 0
    out, copies = run()
    torch.testing.assert_close(out, ref)
    assert copies < copies_inplace


@pytest.mark.parametrize(("stride", "dilation", "bias"), [(1, 1, False), (2, 1, True), (1, 2, False)])
def test_depthwise_weight_grad_equals_autograd(stride: int, dilation: int, bias: bool) -> None:
    from forgery.models.layers.depthwise import FastDepthwiseConv2d, fast_depthwise_grads

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(
        16, 16, 5, stride=stride, padding=2 * dilation, dilation=dilation, groups=16, bias=bias
    )
    net = torch.nn.Sequential(conv)
    x = torch.randn(2, 16, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = conv(x)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    ref = [p.grad.clone() for p in conv.parameters()] + [x.grad.clone()]
    conv.zero_grad()
    x.grad = None
    assert fast_depthwise_grads(net) == 1 and type(conv) is FastDepthwiseConv2d
    assert list(conv.state_dict()) == ["weight", "bias"][: 1 + bias]
    y2 = conv(x)
    assert y2.grad_fn is not None and "DepthwiseConv" in type(y2.grad_fn).__name__  # the fast path ran
    y2.backward(grad_out)
    torch.testing.assert_close(y2, y)
    for got, want in zip([p.grad for p in conv.parameters()] + [x.grad], ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference and large maps take oneDNN's path
        assert conv(x).grad_fn is None
    big = torch.randn(4, 16, 64, 64, requires_grad=True)
    assert "DepthwiseConv" not in type(conv(big).grad_fn).__name__


def test_face_module_switches_depthwise_and_silu() -> None:
    from forgery.models.layers.depthwise import FastDepthwiseConv2d

    cfg = compose_groups({"model": "mat", "loss": "mat", "augmentation": "agda"})
    module = build_module(cfg["model"], cfg["loss"], cfg["augmentation"])
    kinds = [m for m in module.net.modules() if isinstance(m, FastDepthwiseConv2d)]
    assert len(kinds) == 16 and all(m.kernel_size == (5, 5) for m in kinds)  # B4's 5x5 depthwise convs
    assert not any(isinstance(m, torch.nn.SiLU) and m.inplace for m in module.net.modules())
