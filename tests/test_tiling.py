"""Tiled (sliding-window) evaluation: bounded memory on images far larger than the training size."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from forgery.cli.eval import apply_tiling, evaluate
from forgery.cli.predict import predict_images
from forgery.data.base import collate_skipping
from forgery.data.splicing.dataset import SplicingDataset
from forgery.data.splicing.sources import SplicingRecord
from forgery.losses.mtse import MTSELoss
from forgery.losses.targets import edge_targets
from forgery.models.mtse_net import MTSENet, MTSEOutput
from forgery.modules import build_module
from forgery.modules.splicing import SplicingModule
from forgery.utils.tiling import tile_starts, tiled_apply


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is much faster than several on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _record_inputs(net: nn.Module) -> list[tuple[int, int]]:
    """Registers a forward pre-hook on ``net``; the returned list fills with the (H, W) of every call."""
    seen: list[tuple[int, int]] = []
    net.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[-2:])))
    return seen


def _module(tile: int | None = None, overlap: int = 64) -> SplicingModule:
    torch.manual_seed(0)
    module = SplicingModule(
        net=MTSENet(width=8),
        loss=MTSELoss(),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-3),
        eval_tile=tile,
        eval_tile_overlap=overlap,
    )
    return module.eval()


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(75, 50, 32, 8), (20, 90, 32, 0), (100, 37, 16, 15)])
def test_tiled_apply_pointwise_is_exact(h: int, w: int, tile: int, overlap: int) -> None:
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    calls: list[tuple[int, ...]] = []

    def fn(t: Tensor) -> Tensor:  # pointwise, with another channel count
        calls.append(tuple(t.shape))
        return torch.cat([t.sin(), t * 3.0 - 1.0], dim=1)

    y = tiled_apply(fn, x, tile, overlap)
    assert y.shape == (2, 6, h, w) and y.dtype == torch.float32
    assert torch.equal(y, fn(x))
    assert all(c[-2:] == (tile, tile) for c in calls[:-1])
    assert torch.equal(tiled_apply(lambda t: t, x, tile, overlap), x)


def test_tile_starts_cover_and_align_to_the_border() -> None:
    assert tile_starts(100, 128, 64) == [0]
    assert tile_starts(1000, 256, 64) == [0, 192, 384, 576, 744]
    for length, tile, overlap in [(1000, 256, 64), (257, 256, 0), (513, 256, 255), (3488, 512, 64)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[-1] == length - tile
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@torch.no_grad()
def test_tiled_mtse_net_is_bounded_and_valid() -> None:
    torch.manual_seed(0)
    net = MTSENet(width=8).eval()
    seen = _record_inputs(net)
    x = torch.rand(1, 3, 96, 144)
    whole = net(x).mask_prob
    seen.clear()
    tiled = tiled_apply(lambda t: net(t).mask_prob[:, None], x, tile=64, overlap=48, multiple=16)[:, 0]
    assert tiled.shape == whole.shape == (1, 96, 144)
    assert torch.isfinite(tiled).all() and tiled.min() >= 0.0 and tiled.max() <= 1.0
    assert len(seen) == 3 * 6 and all(s == (64, 64) for s in seen)
    assert (tiled - whole).abs().mean() < 0.05  # loose: close to the whole-image map, not equal to it
    # SE global pooling sees a tile, not the image, so only a single tile reproduces the whole image
    single = tiled_apply(lambda t: net(t).mask_prob[:, None], x[..., :64, :64], 64, 48, 16)[:, 0]
    torch.testing.assert_close(single, net(x[..., :64, :64]).mask_prob, rtol=0, atol=1e-6)


def test_module_tiles_a_large_image() -> None:
    module = _module(tile=256)
    seen = _record_inputs(module.net)
    x = torch.rand(1, 3, 1000, 760)
    out = module(x)
    assert isinstance(out, MTSEOutput)
    assert out.mask_prob.shape == (1, 1000, 760) and out.mask_prob.dtype == torch.float32
    assert out.image_edge.shape == (1, 1, 1000, 760) and out.mask_logits.shape == (1, 2, 1000, 760)
    assert torch.isfinite(out.mask_prob).all() and 0.0 <= out.mask_prob.min() <= out.mask_prob.max() <= 1.0
    assert len(seen) == 5 * 4 and max(max(s) for s in seen) <= 256
    # the loss of _eval_step is defined on the stitched output (its logits are log-probabilities)
    mask = torch.zeros(1, 1, 1000, 760)
    mask[..., 300:600, 200:500] = 1.0
    image_edge, mask_edge = edge_targets(x, mask)
    terms = module.loss(out, mask[:, 0].long(), mask_edge, image_edge)
    assert torch.isfinite(terms["loss"])
    # predict_step tiles too; images within the tile and training run on the whole image
    seen.clear()
    assert module.predict_step({"image": x[..., :300, :200]}, 0)["prob"].shape == (1, 300, 200)
    assert max(max(s) for s in seen) == 256
    seen.clear()
    module(torch.rand(1, 3, 256, 128))
    module.train()
    with torch.no_grad():
        module(torch.rand(1, 3, 288, 64))
    assert seen == [(256, 128), (288, 64)]


def test_tiling_errors() -> None:
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiled_apply(lambda t: t, x, tile=100, overlap=8, multiple=16)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(lambda t: t, x, tile=32, overlap=32)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(lambda t: t, x, tile=32, overlap=-1)
    with pytest.raises(ValueError, match="multiple of 16"):
        _module(tile=250)
    with pytest.raises(ValueError, match="overlap"):
        _module(tile=256, overlap=256)
    module = _module()
    with pytest.raises(ValueError, match="overlap"):
        module.set_eval_tiling(128, 128)
    with pytest.raises(ValueError, match="splicing models"):
        apply_tiling(nn.Linear(2, 2), 512)
    apply_tiling(module, 128, 32)
    assert (module.hparams.eval_tile, module.hparams.eval_tile_overlap) == (128, 32)


def _write_pair(root: Path, name: str, h: int, w: int) -> tuple[str, str]:
    rng = np.random.default_rng(len(name) + h)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{name}.png")
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[h // 4 : h // 2, w // 3 : w // 2] = 255
    Image.fromarray(mask).save(root / f"{name}_gt.png")
    return f"{name}.png", f"{name}_gt.png"


def test_tile_policy_keeps_native_size(tmp_path: Path) -> None:
    pairs = [_write_pair(tmp_path, "a", 70, 50), _write_pair(tmp_path, "b", 32, 48)]
    recs = [SplicingRecord(i, tmp_path / im, tmp_path / m, 1, "lum127") for i, (im, m) in zip("ab", pairs)]
    ds = SplicingDataset(recs, image_size=32, resize="tile")
    a, b = ds[0], ds[1]
    assert a["image"].shape == (3, 80, 64) and a["mask"].shape == (1, 80, 64)  # padded to x16, as `none`
    assert a["mask"][:, 70:].sum() == 0 and a["mask"][:, :, 50:].sum() == 0
    assert collate_skipping([b, None])["image"].shape == (1, 3, 32, 48)
    with pytest.raises(ValueError, match="eval_batch_size=1"):
        collate_skipping([a, b])


def test_forgery_eval_tile_override(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README command: data.eval_resize=tile data.eval_batch_size=1 eval_tile=... reaches the module."""
    train_cfg = make_cfg("train", ["model.net.width=8"])
    module = build_module(train_cfg.model, train_cfg.loss, train_cfg.augmentation)
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    torch.save(ckpt, tmp_path / "tiny.ckpt")
    root = tmp_path / "data"
    root.mkdir()
    pairs = [_write_pair(root, "big", 300, 200), _write_pair(root, "small", 40, 72)]
    (root / "index.csv").write_text("image,mask\n" + "".join(f"{i},{m}\n" for i, m in pairs))
    seen: list[tuple[int, int]] = []
    original = MTSENet.forward

    def spy(self: MTSENet, images: Tensor) -> MTSEOutput:
        seen.append(tuple(images.shape[-2:]))
        return original(self, images)

    monkeypatch.setattr(MTSENet, "forward", spy)
    base = [
        f"ckpt_path={tmp_path / 'tiny.ckpt'}",
        "data=list",
        f"data.root={root}",
        f"data.options.index={root / 'index.csv'}",
        "data.eval_resize=tile",
        "data.num_workers=0",
    ]
    with pytest.raises(ValueError, match="needs a tile size"):
        evaluate(make_cfg("eval", [*base, "data.eval_batch_size=1"]))
    cfg = make_cfg("eval", [*base, "data.eval_batch_size=1", "eval_tile=128", "eval_tile_overlap=32"])
    seen.clear()
    metrics, objects = evaluate(cfg)
    assert objects["model"].hparams.eval_tile == 128
    assert metrics["test/n_images"] == 2 and 0.0 <= metrics["test/pixel_f1"] <= 1.0
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert report["size"] == 2
    assert seen and max(max(s) for s in seen) == 128 and (48, 80) in seen  # small image: whole, padded x16
    pcfg = make_cfg("predict", ["ckpt_path=x", "input=y", "tile=512"])
    assert pcfg.tile == 512 and pcfg.tile_overlap is None


def test_predict_images_tiles(tmp_path: Path) -> None:
    module = _module()
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    seen = _record_inputs(module.net)
    scores = predict_images(module, [path], tmp_path / "out", max_size=16, tile=32, tile_overlap=8)
    assert np.asarray(Image.open(tmp_path / "out" / "a_prob.png")).shape == (40, 56)
    assert scores[str(path)]["height"] == 40 and seen and all(s == (32, 32) for s in seen)
