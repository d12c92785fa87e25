"""Issue 12 §3-4 for localization: valid-pixel mask, extra variants, bootstrap intervals, seed summaries,
metric options and the metric card; each value against a direct NumPy / sklearn / scipy computation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from sklearn.metrics import f1_score, roc_auc_score
from torchmetrics.utilities.data import dim_zero_cat

from forgery.data.splicing.dataset import SplicingDataset
from forgery.data.splicing.sources import SplicingRecord
from forgery.metrics import bootstrap as bs
from forgery.metrics import card
from forgery.metrics.localization import (
    BASE_COLUMNS,
    LocalizationMetrics,
    default_hist_bins,
    localization_metrics,
    localization_stat_fn,
)
from forgery.metrics.options import MetricOptions
from tests.test_metrics import loc_batch, sk_localization

EXTRA = ["best_threshold_f1", "permuted_f1", "border_f1"]


def np_best_threshold_f1(p: np.ndarray, m: np.ndarray) -> float:
    """max over every threshold t in the image's values of F1(p >= t), and 0 (predict nothing)."""
    return max([0.0] + [f1_score(m, (p >= t).astype(int), zero_division=0) for t in np.unique(p)])


def np_band(m: np.ndarray, k: int) -> np.ndarray:
    """Pixels whose (2k+1)^2 window (inside the image) holds both classes."""
    H, W = m.shape
    has_pos, has_neg = np.zeros_like(m, bool), np.zeros_like(m, bool)
    for y in range(H):
        for x in range(W):
            win = m[max(0, y - k) : y + k + 1, max(0, x - k) : x + k + 1]
            has_pos[y, x], has_neg[y, x] = win.any(), (~win).any()
    return has_pos & has_neg


def np_extras(probs: torch.Tensor, masks: torch.Tensor, k: int, thr: float = 0.5) -> dict[str, float]:
    best, perm, border, skipped = [], [], [], 0
    for p, m in zip(
        probs.reshape(len(probs), *probs.shape[-2:]).double().numpy(),
        masks.reshape(len(masks), *masks.shape[-2:]).numpy() > 0,
    ):
        if not m.any():
            continue
        pred = (p > thr).astype(int)
        best.append(np_best_threshold_f1(p.ravel(), m.ravel().astype(int)))
        perm.append(
            max(
                f1_score(m.ravel(), pred.ravel(), zero_division=0),
                f1_score(m.ravel(), 1 - pred.ravel(), zero_division=0),
            )
        )
        keep = ~np_band(m, k)
        if not (m & keep).any():
            skipped += 1
            continue
        border.append(f1_score(m[keep].astype(int), pred[keep], zero_division=0))
    return {
        "extra/best_threshold_f1": float(np.mean(best)),
        "extra/permuted_f1": float(np.mean(perm)),
        "extra/border_f1": float(np.mean(border)),
        "extra/n_border_f1_skipped": skipped,
    }


def extra_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """loc_batch plus an image whose 1-px-wide mask vanishes under a 2-px border, and ties (2 decimals)."""
    probs, masks = loc_batch(seed=4, n=9, height=18, width=22)
    masks[8] = 0
    masks[8, 0, 4:14, 10] = 1
    return probs.mul(100).round().div(100), masks


# ------------------------------------------------------------------------------------------ extra variants
def test_extra_variants_equal_numpy() -> None:
    probs, masks = extra_batch()
    got = localization_metrics(probs, masks, extra=EXTRA, border_px=2)
    ref = np_extras(probs, masks, k=2)
    assert 1 <= ref["extra/n_border_f1_skipped"] < 6  # thin masks vanish under the band
    for key, value in ref.items():
        assert got[key].item() == pytest.approx(value, abs=1e-12), key
    # the headline keys are unchanged by asking for variants
    plain = localization_metrics(probs, masks)
    for key, value in plain.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    assert got["extra/best_threshold_f1"] >= got["pixel_f1"] and got["extra/permuted_f1"] >= got["pixel_f1"]


def test_border_zero_is_plain_f1_and_class_accumulates() -> None:
    probs, masks = extra_batch()
    zero = localization_metrics(probs, masks, extra=["border_f1"], border_px=0)
    assert zero["extra/border_f1"].item() == pytest.approx(zero["pixel_f1"].item(), abs=1e-12)
    ref = localization_metrics(probs, masks, extra=EXTRA, border_px=3)
    a, b = LocalizationMetrics(extra=EXTRA, border_px=3), LocalizationMetrics(extra=EXTRA, border_px=3)
    a.update(probs[:4], masks[:4])
    b.update(probs[4:], masks[4:])
    a.merge_state(b)  # a DDP-style reduction (each state's dist_reduce_fx)
    got = a.compute()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-12, equal_nan=True, msg=key)
    assert a._reductions["per_image"] is dim_zero_cat


def test_extra_bad_names_raise() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown extra variant(s) ['best_f1']")):
        LocalizationMetrics(extra=["best_f1"])
    with pytest.raises(ValueError, match="border_px must be an int >= 0"):
        localization_metrics(torch.rand(1, 4, 4), torch.zeros(1, 4, 4), extra=["border_f1"], border_px=-1)


# ------------------------------------------------------------------------------------ valid-pixel mask
def test_padding_outside_valid_equals_unpadded() -> None:
    """21 x 27 images (not divisible by 16) padded to 32 x 32 with confident 'tampered' padding."""
    probs, masks = loc_batch(seed=2, n=6, height=21, width=27)
    pad_p = torch.full((6, 1, 32, 32), 0.9)
    pad_m = torch.zeros(6, 1, 32, 32)
    valid = torch.zeros(6, 1, 32, 32, dtype=torch.bool)
    pad_p[..., :21, :27], pad_m[..., :21, :27], valid[..., :21, :27] = probs, masks, True
    ref = localization_metrics(probs, masks, extra=EXTRA, border_px=2)
    got = localization_metrics(pad_p, pad_m, valid=valid, extra=EXTRA, border_px=2)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-12, equal_nan=True, msg=key)
    sk = sk_localization(probs, masks)
    assert got["pixel_f1_global"].item() == pytest.approx(sk["pixel_f1_global"], abs=1e-12)
    assert got["image_bacc"].item() == pytest.approx(sk["image_bacc"], abs=1e-12)
    # without the valid mask the padding counts (as the false positives it is)
    assert localization_metrics(pad_p, pad_m)["pixel_f1_global"] < got["pixel_f1_global"] - 0.05


def test_native_size_dataset_marks_padding_invalid(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (21, 27, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((21, 27), np.uint8)
    mask[5:12, 20:27] = 255  # touches the right edge, next to the padding
    Image.fromarray(mask).save(tmp_path / "a_gt.png")
    rec = SplicingRecord("a.png", tmp_path / "a.png", tmp_path / "a_gt.png", 1, "lum127")
    for policy, shape in (
        ("none", (32, 32)),
        ("tile", (32, 32)),
        ("pad_crop", (32, 32)),
        ("resize", (32, 32)),
    ):
        sample = SplicingDataset([rec], image_size=32, resize=policy)[0]
        assert sample["valid"].shape == (1, *shape) and sample["valid"].dtype == torch.bool, policy
        expect = torch.ones(1, 32, 32, dtype=torch.bool)
        if policy != "resize":  # zero-padded to 32 x 32 (x16, or up to S then the whole centre crop)
            expect[:] = False
            expect[:, :21, :27] = True
        assert torch.equal(sample["valid"], expect), policy
    sample = SplicingDataset([rec], image_size=32, resize="none")[0]
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(1, 32, 32, generator=g)
    got = localization_metrics(prob, sample["mask"], valid=sample["valid"], extra=EXTRA, border_px=2)
    ref = localization_metrics(prob[:, :21, :27], sample["mask"][:, :21, :27], extra=EXTRA, border_px=2)
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-12, equal_nan=True, msg=key)


def test_valid_bad_input_raises() -> None:
    with pytest.raises(ValueError, match=re.escape("valid must have the (B, H, W) of probs")):
        localization_metrics(torch.rand(1, 4, 4), torch.zeros(1, 4, 4), valid=torch.ones(1, 4, 5))
    with pytest.raises(ValueError, match="at least one valid pixel"):
        localization_metrics(
            torch.rand(2, 4, 4),
            torch.zeros(2, 4, 4),
            valid=torch.tensor([1, 0]).view(2, 1, 1).expand(2, 4, 4),
        )


# ------------------------------------------------------------------------------------------- bootstrap
def _filled(probs, masks, **kw) -> LocalizationMetrics:
    metric = LocalizationMetrics(per_image=True, **kw)
    for lo in range(0, len(probs), 4):
        metric.update(probs[lo : lo + 4], masks[lo : lo + 4])
    return metric


def test_resample_counts_are_chunk_independent_multinomial_draws() -> None:
    big = np.concatenate(list(bs.resample_counts(7, 50, seed=3)))
    small = np.concatenate(list(bs.resample_counts(7, 50, seed=3, chunk_elements=10)))
    idx = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    assert np.array_equal(big, small) and big.shape == (50, 7) and (big.sum(1) == 7).all()
    assert np.array_equal(big, np.stack([np.bincount(r, minlength=7) for r in idx]))


def test_stat_fn_at_unit_weights_is_the_metric() -> None:
    probs, masks = extra_batch()
    metric = _filled(probs, masks, num_bins=200, hist_bins=200, extra=EXTRA, border_px=2)
    ref = metric.compute()
    st = metric._state()
    N = len(probs)
    stat = localization_stat_fn(
        st["per_image"].view(N, len(BASE_COLUMNS) + 3),
        st["image_scores"],
        st["image_labels"],
        0.5,
        EXTRA,
        st["image_hist"].view(N, 2, 200),
    )
    got = stat(torch.ones(1, N, dtype=torch.float64))
    assert set(got) == {k for k in ref if not k.startswith(("n_", "extra/n_"))}
    for key, value in got.items():
        assert value.item() == pytest.approx(ref[key].item(), abs=1e-6), (
            key
        )  # image_auroc: float32 in torchmetrics


def test_bootstrap_values_equal_direct_numpy_resampling() -> None:
    probs, masks = loc_batch(seed=5, n=12)
    metric = _filled(probs, masks, num_bins=100, hist_bins=100)
    st = metric._state()
    N = len(probs)
    rows = st["per_image"].view(N, len(BASE_COLUMNS))
    stat = localization_stat_fn(
        rows, st["image_scores"], st["image_labels"], 0.5, (), st["image_hist"].view(N, 2, 100)
    )
    got = bs.bootstrap_values(stat, N, n=40, seed=7)
    idx = np.random.default_rng(7).integers(0, N, size=(40, N))
    p = probs.reshape(N, -1).double().numpy()
    m = masks.reshape(N, -1).numpy().astype(int)
    per = sk_localization(probs, masks)  # sanity: the full set
    assert stat(torch.ones(1, N, dtype=torch.float64))["pixel_f1"].item() == pytest.approx(
        per["pixel_f1"], abs=1e-12
    )
    for r, draw in enumerate(idx):
        tampered = [i for i in draw if m[i].any()]
        f1 = np.mean([f1_score(m[i], (p[i] > 0.5).astype(int), zero_division=0) for i in tampered])
        assert got["pixel_f1"][r].item() == pytest.approx(f1, abs=1e-12)
        glob = f1_score(m[draw].ravel(), (p[draw] > 0.5).ravel().astype(int), zero_division=0)
        assert got["pixel_f1_global"][r].item() == pytest.approx(glob, abs=1e-12)
        labels, scores = m[draw].any(1).astype(int), p[draw].max(1)
        auc = roc_auc_score(labels, scores) if 0 < labels.sum() < N else float("nan")
        assert got["image_auroc"][r].item() == pytest.approx(auc, abs=1e-12, nan_ok=True)
        # 100-bin AUROC over the resampled pixels = the trapezoid over bin edges (ties half)
        bins = np.clip((p[draw].ravel() * 100).astype(int), 0, 99)
        y = m[draw].ravel()
        hp, hn = np.bincount(bins[y == 1], minlength=100), np.bincount(bins[y == 0], minlength=100)
        above = hp.sum() - np.cumsum(hp)
        ref_auc = float((hn * (above + 0.5 * hp)).sum() / (hp.sum() * hn.sum()))
        assert got["pixel_auroc_global"][r].item() == pytest.approx(ref_auc, abs=1e-12)


def test_intervals_contain_point_reproducible_and_ddp_merge() -> None:
    probs, masks = loc_batch(seed=6, n=40, height=16, width=16)
    metric = _filled(probs, masks, extra=["permuted_f1"])
    point = metric.compute()
    iv = metric.intervals(n=300, seed=0)
    assert metric.hist_bins == default_hist_bins(1000) == 100
    assert set(iv) == {k for k in point if not k.startswith("n_")}
    for key, (lo, hi) in iv.items():
        assert lo <= point[key].item() <= hi, key
        assert hi - lo > 0, key
    assert metric.intervals(n=300, seed=0) == iv and metric.intervals(n=300, seed=1) != iv
    a, b = (
        LocalizationMetrics(per_image=True, extra=["permuted_f1"]),
        LocalizationMetrics(per_image=True, extra=["permuted_f1"]),
    )
    a.update(probs[:4], masks[:4])
    a.update(probs[4:13], masks[4:13])
    b.update(probs[13:], masks[13:])
    a.merge_state(b)  # torchmetrics puts b's images first: the intervals do not depend on the order
    merged = a.intervals(n=300, seed=0)
    assert merged.keys() == iv.keys()
    for key, value in iv.items():
        assert merged[key] == pytest.approx(value, abs=1e-12), key
    assert {a._reductions[k] for k in ("per_image", "image_hist")} == {dim_zero_cat}
    # the coarse-histogram interval of pixel_auroc_global is shifted onto the 1000-bin value
    exact = _filled(probs, masks, hist_bins=1000).intervals(n=300, seed=0)["pixel_auroc_global"]
    assert iv["pixel_auroc_global"] == pytest.approx(exact, abs=5e-3)


def test_weighted_sum_is_the_exact_matmul_whatever_the_block() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 200_000, (37, 12), generator=g, dtype=torch.int32)
    w = torch.randint(0, 5, (9, 37), generator=g).double()
    index = torch.randperm(37, generator=g)
    want = w @ values[index].double()
    for block in (1, 5, 37, 4096):
        assert torch.equal(bs.weighted_sum(w, values, index, block=block), want)
    assert torch.equal(bs.weighted_sum(w, values), w @ values.double())


def _tied_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Authentic 2 x 2 images that tie on every per-image row value and image score (two pixels above 0.5,
    the larger at 0.9) but differ in their histograms, the other pixel above 0.5 on either side of the
    tampered images' positive pixels (0.8, 0.7), and those tampered images after them."""
    rows = [[0.9, v, 0.2, 0.3] for v in (0.6, 0.68, 0.75, 0.78, 0.85)] + [[0.9, 0.55, 0.05, 0.3]]
    probs = torch.tensor(rows + [[0.8, 0.6, 0.1, 0.3], [0.7, 0.2, 0.6, 0.1]]).view(-1, 2, 2)
    masks = torch.zeros_like(probs)
    masks[6:, 0, 0] = 1
    return probs, masks


def test_intervals_do_not_depend_on_arrival_order_when_rows_tie() -> None:
    probs, masks = _tied_images()
    metric = _filled(probs, masks)
    state = metric._state()
    rows = state["per_image"].view(len(probs), -1)
    assert (
        torch.equal(rows[0].nan_to_num(), rows[5].nan_to_num())
        and state["image_scores"][:6].unique().numel() == 1
    )
    iv = metric.intervals(n=200, seed=0)
    for seed in range(3):
        perm = torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed))
        assert _filled(probs[perm], masks[perm]).intervals(n=200, seed=0) == iv
    # the canonical order sorts by the columns first, the tie-break only orders equal rows
    cols = [torch.tensor([2.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 5.0, 5.0, 9.0])]
    tie = torch.tensor([[1, 2], [3, 4], [1, 2], [0, 0]], dtype=torch.int32)
    order = bs.canonical_order(cols, tie).tolist()
    assert order[0] == 3 and order[-1] == 0 and sorted(order[1:3]) == [1, 2]
    assert bs.canonical_order(cols, tie[[0, 2, 1, 3]]).tolist()[1:3] == order[1:3][::-1]


def test_compute_consolidates_the_per_image_state_and_updates_go_on() -> None:
    probs, masks = loc_batch(seed=8, n=12, height=8, width=8)
    metric = _filled(probs[:8], masks[:8])
    assert len(metric.per_image) == 2
    first = metric.compute()
    assert len(metric.per_image) == 1 and len(metric.image_hist) == 1  # one tensor, the chunks freed
    assert first["n_images"].item() == 8
    metric.update(probs[8:], masks[8:])
    whole = _filled(probs, masks)
    for key, value in whole.compute().items():
        assert torch.allclose(metric.compute()[key], value, equal_nan=True), key
    assert metric.intervals(n=100, seed=0) == whole.intervals(n=100, seed=0)


def test_release_free_memory_trims_the_heap() -> None:
    from forgery.bench.system import _status_kb
    from forgery.utils.memory import release_free_memory

    # 128 MB of written 64 kB heap chunks (below glibc's mmap threshold), every other one freed: 64 MB of
    # holes that stay resident until trimmed
    blocks = [bytearray(b"\x01") * (64 * 1024) for _ in range(2000)]
    kept = blocks[1::2]
    del blocks
    before = _status_kb("VmRSS")
    assert release_free_memory(collect=False) is True  # glibc (Linux CI); False elsewhere, never an error
    freed_mb = (before - _status_kb("VmRSS")) / 1024
    assert freed_mb > 32, freed_mb
    assert len(kept) == 1000 and release_free_memory() is True


def test_intervals_need_per_image_and_bad_spec_raises() -> None:
    with pytest.raises(ValueError, match=re.escape("intervals() needs LocalizationMetrics(per_image=True)")):
        LocalizationMetrics().intervals()
    with pytest.raises(ValueError, match="hist_bins .7. must divide num_bins .1000."):
        LocalizationMetrics(per_image=True, hist_bins=7)
    with pytest.raises(ValueError, match="level must be a float in"):
        bs.bootstrap_ci(lambda w: {"x": w.sum(1)}, 3, level=95.0)
    assert LocalizationMetrics(num_bins=50, per_image=True).hist_bins == 50


def test_summarize_seeds_is_the_t_interval() -> None:
    runs = [
        {"test/f1": 0.5, "test/auc": 0.9, "only": 1.0},
        {"test/f1": 0.55, "test/auc": None},
        {"test/f1": 0.61, "test/auc": 0.8},
    ]
    got = bs.summarize_seeds(runs)
    v = np.array([0.5, 0.55, 0.61])
    lo, hi = stats.t.interval(0.95, 2, loc=v.mean(), scale=stats.sem(v))
    assert got["test/f1"]["n"] == 3 and got["test/f1"]["mean"] == pytest.approx(v.mean())
    assert got["test/f1"]["std"] == pytest.approx(v.std(ddof=1))
    assert got["test/f1"]["interval"] == pytest.approx([lo, hi])
    assert got["test/auc"]["n"] == 2 and got["only"] == {"n": 1, "mean": 1.0, "std": None, "interval": None}
    with pytest.raises(TypeError, match=re.escape("run 1, metric 'x': expected a number or None")):
        bs.summarize_seeds([{"x": 1.0}, {"x": "a"}])


# ------------------------------------------------------------------------------------- options and card
def test_metric_options_compose_and_validate(make_cfg) -> None:
    for name in ("train", "eval"):
        cfg = make_cfg(
            name,
            ["ckpt_path=x", "metrics.extra=[best_threshold_f1,border_f1]", "metrics.bootstrap.n=50"]
            if name == "eval"
            else ["metrics.video_aggregation=median"],
        )
        opts = MetricOptions.from_config(cfg.metrics)
        assert opts == MetricOptions.from_config(opts)
    assert MetricOptions.from_config(cfg.metrics).extra == ("best_threshold_f1", "border_f1")
    assert MetricOptions.from_config(cfg.metrics).bootstrap.n == 50
    assert MetricOptions.from_config(None) == MetricOptions()
    with pytest.raises(ValueError, match=re.escape("unknown key(s) ['bootstrap.iters']")):
        MetricOptions.from_config({"bootstrap": {"iters": 5}})
    with pytest.raises(
        ValueError, match=re.escape("video_aggregation must be one of ['mean', 'max', 'topk_mean', 'median']")
    ):
        MetricOptions(video_aggregation="mode")
    with pytest.raises(ValueError, match="unknown extra variant"):
        MetricOptions(extra=["f1_max"])


def test_protocol_card_contents(tmp_path: Path) -> None:
    c = card.protocol_card(
        "splicing",
        0.5,
        {"extra": ["border_f1"], "border_px": 4},
        num_bins=1000,
        image_size=384,
        resize="none",
    )
    assert c["threshold"] == {"rule": "fixed", "value": 0.5, "decision": "positive when prob > threshold"}
    assert "tampered only" in c["pixel_metrics"]["images"] and c["image_score"].startswith(
        "max of the probability map"
    )
    assert (
        c["border_px"] == 4
        and c["extra"] == ["border_f1"]
        and c["split_sha256"] is None
        and c["perturbation"] is None
    )
    assert (c["image_size"], c["resize"], c["video_aggregation"]) == (384, "none", None)
    assert c["version"] == __import__("forgery").__version__
    commit = c["git"]["commit"]
    assert commit is None or re.fullmatch("[0-9a-f]{40}", commit)
    assert card.git_info(tmp_path) == {"commit": None, "dirty": None}  # e.g. an installed wheel
    splits = {"test": {"n": 3, "sha256": "ab" * 32}}
    jpeg = {"name": "jpeg", "level": 70}
    locked = card.protocol_card("splicing", 0.5, None, splits=splits, perturbation=jpeg)
    assert locked["split_sha256"] == {"test": "ab" * 32} and locked["perturbation"] == jpeg
    f = card.protocol_card(
        "faces",
        0.5,
        {"video_aggregation": "topk_mean", "video_topk": 3},
        val_thresholds=(0.31, float("nan")),
        selection={"monitor": "val/auc", "mode": "max", "split": "val"},
    )
    assert f["video_aggregation"]["rule"] == "topk_mean" and f["video_aggregation"]["topk"] == 3
    assert f["val_thresholds"]["frame"] == 0.31 and f["val_thresholds"]["video"] is None
    assert f["checkpoint_selection"]["split"] == "val"
    head, extra = card.split_extra({"test/pixel_f1": 0.3, "test/extra/permuted_f1": 0.4})
    assert head == {"test/pixel_f1": 0.3} and extra == {"test/extra/permuted_f1": 0.4}
