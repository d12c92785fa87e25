"""Robustness perturbations (forgery/augment/perturb.py, perturb=): each op against an independent reference,
identity levels exact through forgery-eval, both model kinds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data as skdata

from forgery.augment.perturb import (
    JPEG,
    GaussianBlur,
    GaussianNoise,
    NoPerturbation,
    Resize,
    blur_kernel_size,
    make_perturbation,
)
from forgery.cli.eval import evaluate
from forgery.modules import build_module
from tests.conftest import SMALL_FACES, SMALL_SPLICING


def _photo(h: int = 64, w: int = 96) -> np.ndarray:
    return np.asarray(Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR))


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().div(255.0)


def test_factory_levels_and_errors() -> None:
    assert isinstance(make_perturbation("none"), NoPerturbation)
    assert make_perturbation("jpeg", 70).describe() == {"name": "jpeg", "level": 70}
    assert make_perturbation("noise", 5, seed=3).describe() == {"name": "noise", "level": 5.0, "seed": 3}
    assert [make_perturbation(n, v).is_identity for n, v in (("blur", 0), ("resize", 1), ("noise", 0))] == [
        True
    ] * 3
    assert not make_perturbation("jpeg", 100).is_identity
    with pytest.raises(ValueError, match="unknown perturbation"):
        make_perturbation("jpg", 90)
    with pytest.raises(ValueError, match="needs perturb.level"):
        make_perturbation("blur")
    with pytest.raises(ValueError, match=r"integer in \[1, 100\]"):
        make_perturbation("jpeg", 101)
    with pytest.raises(ValueError, match="> 0"):
        make_perturbation("resize", 0)
    with pytest.raises(ValueError, match=">= 0"):
        make_perturbation("noise", -1)


@pytest.mark.parametrize("quality", [100, 90, 70, 50])
def test_jpeg_equals_pil_and_degrades_with_quality(quality: int) -> None:
    arr = _photo()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    pil = _tensor(np.asarray(Image.open(buf).convert("RGB")))
    out = JPEG(quality)(_tensor(arr))
    assert out.shape == (1, 3, 64, 96) and out.dtype == torch.float32
    assert torch.equal(out, pil)  # the same libjpeg pixels as PIL's save(quality=q)
    err = (out - _tensor(arr)).abs().mean().item() * 255
    assert err < {100: 4.0, 90: 6.0, 70: 9.0, 50: 11.0}[quality]


def test_jpeg_100_is_close_and_monotone() -> None:
    x = _tensor(_photo())
    errs = [(JPEG(q)(x) - x).abs().mean().item() * 255 for q in (100, 90, 70, 50)]
    assert errs == sorted(errs) and errs[0] > 0  # not lossless, and worse as the quality drops
    psnr = 10 * np.log10(1.0 / ((JPEG(100)(x) - x) ** 2).mean().item())
    assert psnr > 30  # 35.0 dB here: 4:2:0 chroma subsampling of a detailed 64 x 96 photo


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_blur_matches_scipy(sigma: float) -> None:
    arr = _photo(48, 40)
    out = GaussianBlur(sigma)(_tensor(arr))[0].permute(1, 2, 0).numpy()
    # torch/kornia "reflect" (edge not repeated) is scipy's "mirror"; +-3 sigma -> radius ceil(3 sigma)
    ref = np.stack(
        [
            gaussian_filter(arr[..., c].astype(np.float64) / 255, sigma, mode="mirror", truncate=3.0)
            for c in range(3)
        ],
        -1,
    )
    assert blur_kernel_size(sigma) == {1.0: 7, 2.0: 13, 3.0: 19}[sigma]
    assert np.abs(out - ref).max() <= 0.5 / 255 + 1e-5  # equal up to the 8-bit rounding
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-3)


def test_noise_std_seeding_and_clipping() -> None:
    grey = torch.full((3, 3, 64, 64), 0.5)
    noise = GaussianNoise(10.0, seed=0)
    out = noise(grey, torch.tensor([0, 1, 2]))
    diff = (out - grey) * 255
    # std sqrt(sigma^2 + 1/12) with the 8-bit rounding; per sample of 12,288 pixels, +-3 %
    for d in diff:
        assert float(d.std()) == pytest.approx((100 + 1 / 12) ** 0.5, rel=0.03)
        assert abs(float(d.mean())) < 0.3
    # seeded by (seed, dataset index): the same sample gets the same noise in another batch position
    again = noise(grey[:2], torch.tensor([2, 0]))
    assert torch.equal(again[0], out[2]) and torch.equal(again[1], out[0])
    assert not torch.equal(out[0], out[1])
    assert not torch.equal(GaussianNoise(10.0, seed=1)(grey[:1], [0]), out[:1])
    assert float(GaussianNoise(15.0)(torch.ones(1, 3, 8, 8), [0]).max()) == 1.0  # clipped to [0, 1]
    with pytest.raises(ValueError, match="dataset index"):
        noise(grey)


def test_resize_shapes_round_trip_and_pil() -> None:
    arr = _photo(40, 56)
    x = _tensor(arr)
    small = Resize(0.75)(x)
    assert small.shape == (1, 3, 30, 42)
    pil = _tensor(np.asarray(Image.fromarray(arr).resize((42, 30), Image.BILINEAR)))
    assert (small - pil).abs().max().item() * 255 <= 1.0 + 1e-4  # PIL's antialiased bilinear, to 1 level
    padded = Resize(0.75, multiple=16)(x)
    assert padded.shape == (1, 3, 32, 48)
    assert torch.equal(padded[..., :30, :42], small)
    maps = torch.randn(1, 2, 32, 48)
    back = Resize(0.75, multiple=16).restore(maps, (40, 56))
    assert back.shape == (1, 2, 40, 56)
    ref = torch.nn.functional.interpolate(maps[..., :30, :42], size=(40, 56), mode="bilinear")
    assert torch.allclose(back, ref)
    assert Resize(0.5)(x).shape == (1, 3, 20, 28)
    assert Resize(1.0)(x) is x


# ------------------------------------------------------------------------------------- through forgery-eval
@pytest.fixture
def splicing_ckpt(make_cfg, tmp_path: Path) -> Path:
    cfg = make_cfg("train", ["model.net.width=8"])
    torch.manual_seed(0)
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    torch.save(ckpt, path := tmp_path / "splicing.ckpt")
    return path


@pytest.fixture
def faces_ckpt(make_cfg, tmp_path: Path) -> Path:
    cfg = make_cfg("train", ["experiment=mat_synth", *SMALL_FACES, "model.net.backbone=tf_efficientnet_b0"])
    torch.manual_seed(0)
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    torch.save(ckpt, path := tmp_path / "faces.ckpt")
    return path


def _eval(make_cfg, ckpt: Path, small: list[str], *perturb: str) -> tuple[dict, dict]:
    cfg = make_cfg("eval", [f"ckpt_path={ckpt}", *small, "trainer.precision=32-true", *perturb])
    metrics, _ = evaluate(cfg)
    return metrics, json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_splicing_eval_identity_levels_exact_and_perturbations(make_cfg, splicing_ckpt: Path) -> None:
    base, report = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING)
    assert report["perturbation"] == {"name": "none", "level": None}
    for perturb in (["perturb=blur", "perturb.level=0"], ["perturb=noise", "perturb.level=0"]):
        metrics, _ = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, *perturb)
        assert metrics == base, perturb
    metrics, report = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, "perturb=resize", "perturb.level=1")
    assert metrics == base and report["perturbation"] == {"name": "resize", "level": 1.0}
    # JPEG 100 is close, not equal: pixel metrics within 0.01 (they moved by < 1e-3 here); the image AUROC
    # of 6 tampered vs 2 authentic images moves in steps of 1/12, one swapped pair at most
    metrics, report = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, "perturb=jpeg", "perturb.level=100")
    assert report["perturbation"] == {"name": "jpeg", "level": 100}
    assert metrics["test/n_tampered"] == 6 and metrics["test/n_images"] == 8
    for k in ("test/pixel_f1", "test/pixel_auroc", "test/pixel_f1_global", "test/pixel_auroc_global"):
        assert metrics[k] == pytest.approx(base[k], abs=0.01), k
    assert metrics["test/image_auroc"] == pytest.approx(base["test/image_auroc"], abs=1 / 12 + 1e-6)
    assert metrics != base
    # the model sees 32 px images (64 * 0.5, divisible by 16): metrics still over the 64 x 64 masks
    metrics, report = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, "perturb=resize", "perturb.level=0.5")
    assert report["perturbation"] == {"name": "resize", "level": 0.5}
    assert metrics["test/n_images"] == base["test/n_images"]
    assert metrics["test/pixel_auroc"] != base["test/pixel_auroc"]
    metrics, report = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, "perturb=noise", "perturb.level=15")
    assert report["perturbation"] == {"name": "noise", "level": 15.0, "seed": 0}
    assert metrics["test/pixel_auroc"] != base["test/pixel_auroc"]


def test_splicing_resize_pads_to_multiple_of_16(make_cfg, splicing_ckpt: Path) -> None:
    # 64 * 0.75 = 48 px is divisible by 16; 0.7 -> 45 px is padded to 48 and the padding cropped away
    metrics, _ = _eval(make_cfg, splicing_ckpt, SMALL_SPLICING, "perturb=resize", "perturb.level=0.7")
    assert metrics["test/pixel_auroc"] is not None and 0 <= metrics["test/pixel_auroc"] <= 1


# MAT at 64 px has 4 x 4 attention maps whose zeroed 2-px border leaves nothing: a constant output. 128 px.
FACES_128 = [*SMALL_FACES, "data.image_size=128"]


def test_faces_eval_identity_levels_exact_and_perturbations(make_cfg, faces_ckpt: Path) -> None:
    base, _ = _eval(make_cfg, faces_ckpt, FACES_128)
    metrics, report = _eval(make_cfg, faces_ckpt, FACES_128, "perturb=noise", "perturb.level=0")
    assert metrics == base and report["perturbation"]["level"] == 0.0
    noisy, _ = _eval(make_cfg, faces_ckpt, FACES_128, "perturb=noise", "perturb.level=15")
    again, _ = _eval(make_cfg, faces_ckpt, FACES_128, "perturb=noise", "perturb.level=15")
    assert noisy == again  # seeded
    assert noisy["test/loss"] != base["test/loss"]
    small, report = _eval(make_cfg, faces_ckpt, FACES_128, "perturb=resize", "perturb.level=0.75")
    assert report["perturbation"] == {"name": "resize", "level": 0.75}
    assert small["test/n_frames"] == base["test/n_frames"] and small["test/loss"] != base["test/loss"]
