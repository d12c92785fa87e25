"""Metric suite against sklearn / NumPy references: localization (pixel + image level) and detection."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    matthews_corrcoef,
    roc_auc_score,
    roc_curve,
)
from torchmetrics.utilities.data import dim_zero_cat, dim_zero_sum

from forgery.metrics import DetectionMetrics, LocalizationMetrics, detection_metrics, localization_metrics
from forgery.metrics import localization as loc
from tests.conftest import REAL_DATA

REAL = REAL_DATA
SUM_STATES = loc._SUM_STATES + loc._COUNT_STATES


# ----------------------------------------------------------------------------------------------- helpers
def loc_batch(
    seed: int = 0, n: int = 10, height: int = 24, width: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """probs/masks (n, 1, H, W): 0-2 authentic, 3 tampered with no predicted positive, 4 fully covered."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, height, width)
    for b in range(3, n):
        y0, x0 = torch.randint(0, height // 2, (2,), generator=g).tolist()
        h, w = torch.randint(3, height // 2, (2,), generator=g).tolist()
        masks[b, 0, y0 : y0 + h, x0 : x0 + w] = 1
    masks[4] = 1
    probs = (0.35 * masks + 0.65 * torch.rand(n, 1, height, width, generator=g)).clamp(0, 1)
    probs[3] *= 0.49
    return probs, masks


def sk_localization(probs: torch.Tensor, masks: torch.Tensor, thr: float = 0.5) -> dict[str, float]:
    """sklearn reference for every localization key."""
    p = probs.reshape(probs.shape[0], -1).double().numpy()
    m = masks.reshape(masks.shape[0], -1).numpy().astype(int)
    pred = (p > thr).astype(int)
    tampered = m.any(1)
    per = {"f1": [], "iou": [], "mcc": [], "auroc": [], "f1_all_tampered": []}
    for b in np.flatnonzero(tampered):
        per["f1"].append(f1_score(m[b], pred[b], zero_division=0))
        per["f1_all_tampered"].append(f1_score(m[b], np.ones_like(m[b])))
        per["iou"].append(jaccard_score(m[b], pred[b], zero_division=0))
        per["mcc"].append(matthews_corrcoef(m[b], pred[b]))
        if not m[b].all():
            per["auroc"].append(roc_auc_score(m[b], p[b]))
    out = {f"pixel_{k}": float(np.mean(v)) for k, v in per.items()}
    out["pixel_f1_global"] = f1_score(m.ravel(), pred.ravel(), zero_division=0)
    out["pixel_iou_global"] = jaccard_score(m.ravel(), pred.ravel(), zero_division=0)
    out["pixel_mcc_global"] = matthews_corrcoef(m.ravel(), pred.ravel())
    out["pixel_auroc_global"] = roc_auc_score(m.ravel(), p.ravel())
    scores, labels = p.max(1), tampered.astype(int)
    out["image_auroc"] = roc_auc_score(labels, scores)
    out["image_bacc"] = balanced_accuracy_score(labels, (scores > thr).astype(int))
    out["n_images"], out["n_tampered"] = len(labels), int(labels.sum())
    out["n_pixel_auroc_skipped"] = int(tampered.sum()) - len(per["auroc"])
    return out


def eer_reference(y: np.ndarray, s: np.ndarray) -> float:
    """EER from sklearn's ROC: walk the segments, interpolate where FPR - FNR crosses 0."""
    fpr, tpr, _ = roc_curve(y, s)
    d = fpr - (1 - tpr)
    for i in range(1, len(d)):
        if d[i] >= 0:
            t = -d[i - 1] / (d[i] - d[i - 1])
            return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    raise AssertionError("ROC never crosses FPR = FNR")


def det_data(seed: int = 0, n_videos: int = 24, frames: int = 8):
    """Shuffled frames of one-label videos; sparse int64 ids; float32 probs with ties (2 decimals)."""
    rng = np.random.default_rng(seed)
    vid_labels = rng.integers(0, 2, n_videos)
    vid_labels[:2] = [0, 1]
    ids = np.repeat(10**12 + rng.choice(10**6, n_videos, replace=False), frames)
    labels = np.repeat(vid_labels, frames)
    probs = np.clip(np.round(0.3 * labels + 0.7 * rng.random(labels.size), 2), 0, 1).astype(np.float32)
    order = rng.permutation(labels.size)
    return probs[order], labels[order], ids[order]


# ------------------------------------------------------------------------------------------ localization
def test_localization_matches_sklearn():
    probs, masks = loc_batch()
    ref = sk_localization(probs, masks)
    got = localization_metrics(probs, masks)
    assert set(got) == set(ref)
    assert ref["n_images"] == 10 and ref["n_tampered"] == 7 and ref["n_pixel_auroc_skipped"] == 1
    for key in (
        "pixel_f1",
        "pixel_f1_all_tampered",
        "pixel_iou",
        "pixel_mcc",
        "pixel_f1_global",
        "pixel_iou_global",
        "pixel_mcc_global",
    ):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-6), key
    for key in ("pixel_auroc", "pixel_auroc_global"):
        assert got[key].item() == pytest.approx(ref[key], abs=2e-3), key
    for key in ("image_auroc", "image_bacc", "n_images", "n_tampered", "n_pixel_auroc_skipped"):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-7), key
    assert all(v.dtype == torch.float64 and v.ndim == 0 for v in got.values())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_localization_edge_images_per_image_values():
    """Hand-checked per-image conventions on the special images of the batch."""
    probs, masks = loc_batch()
    # image 3: true positives but no predicted positive -> F1 = IoU = 0, MCC denominator 0 -> 0
    one = localization_metrics(probs[3:4], masks[3:4])
    assert (one["pixel_f1"].item(), one["pixel_iou"].item(), one["pixel_mcc"].item()) == (0.0, 0.0, 0.0)
    # image 4: fully covered -> per-image AUROC undefined, skipped and counted; MCC denominator 0 -> 0
    full = localization_metrics(probs[4:5], masks[4:5])
    assert torch.isnan(full["pixel_auroc"]) and full["n_pixel_auroc_skipped"].item() == 1
    assert full["pixel_mcc"].item() == matthews_corrcoef(np.ones(480), (probs[4].flatten() > 0.5).numpy())
    # authentic only: tampered-image means and one-class AUROCs are NaN, not exceptions
    auth = localization_metrics(probs[:3], masks[:3])
    for key in ("pixel_f1", "pixel_iou", "pixel_mcc", "pixel_auroc", "pixel_auroc_global", "image_auroc"):
        assert torch.isnan(auth[key]), key
    assert auth["n_tampered"].item() == 0 and auth["pixel_f1_global"].item() == 0.0
    labels, preds = np.zeros(3, int), (probs[:3].amax((1, 2, 3)) > 0.5).numpy().astype(int)
    assert auth["image_bacc"].item() == pytest.approx(balanced_accuracy_score(labels, preds), abs=1e-12)


def test_localization_hist_auroc_hand_case():
    """1x4 image, probs .1 .4 .35 .8, mask 0 0 1 1: exact AUROC 0.75; 4 bins put .35/.4 in one bin (tie)."""
    probs = torch.tensor([[[0.1, 0.4, 0.35, 0.8]]])
    masks = torch.tensor([[[0, 0, 1, 1]]])
    assert localization_metrics(probs, masks, num_bins=1000)["pixel_auroc"].item() == pytest.approx(0.75)
    got = localization_metrics(probs, masks, num_bins=4)
    assert got["pixel_auroc"].item() == pytest.approx(0.875)  # (1 + 0.5 + 1 + 1) / 4
    assert got["pixel_auroc_global"].item() == pytest.approx(0.875)


def test_localization_class_accumulates_like_functional_and_merges():
    probs, masks = loc_batch(seed=1, n=12)
    ref = localization_metrics(probs, masks, num_bins=200)
    metric = LocalizationMetrics(num_bins=200)
    for lo, hi in ((0, 3), (3, 7), (7, 12)):
        metric.update(probs[lo:hi, 0], masks[lo:hi, 0].bool())  # (B, H, W) and bool masks also accepted
    got = metric.compute()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-12, equal_nan=True, msg=key)
    # a DDP-style reduction of two partial states (torchmetrics applies each state's dist_reduce_fx)
    a, b = LocalizationMetrics(num_bins=200), LocalizationMetrics(num_bins=200)
    a.update(probs[:5], masks[:5])
    b.update(probs[5:], masks[5:])
    a.merge_state(b)
    merged = a.compute()
    for key in ref:
        torch.testing.assert_close(merged[key], ref[key], rtol=0, atol=1e-12, equal_nan=True, msg=key)
    metric.reset()
    assert metric.tp.item() == 0 and metric.image_scores == []
    # forward(): returns the batch's metrics and still accumulates
    batch = metric(probs[6:], masks[6:])
    expected = localization_metrics(probs[6:], masks[6:])["pixel_f1"]
    torch.testing.assert_close(batch["pixel_f1"], expected, rtol=0, atol=1e-12)
    metric(probs[:6], masks[:6])
    again = metric.compute()
    torch.testing.assert_close(again["pixel_mcc_global"], ref["pixel_mcc_global"], rtol=0, atol=1e-12)


def test_localization_states_flat_memory_and_reductions():
    metric = LocalizationMetrics(num_bins=50)
    probs, masks = loc_batch(n=6, height=8, width=8)
    metric.update(probs, masks)
    sizes = {name: getattr(metric, name).numel() for name in SUM_STATES}
    for _ in range(4):
        metric.update(probs, masks)
    assert {name: getattr(metric, name).numel() for name in SUM_STATES} == sizes
    assert sizes["hist_pos"] == sizes["hist_neg"] == 50
    assert len(metric.image_scores) == len(metric.image_labels) == 5
    assert sum(t.numel() for t in metric.image_scores) == 30
    assert metric.hist_pos.sum().item() + metric.hist_neg.sum().item() == 5 * 6 * 64
    assert metric._reductions.keys() == {*SUM_STATES, "image_scores", "image_labels"}
    for name in SUM_STATES:
        assert metric._reductions[name] is dim_zero_sum, name
    assert (
        metric._reductions["image_scores"] is dim_zero_cat
        and metric._reductions["image_labels"] is dim_zero_cat
    )
    assert LocalizationMetrics.full_state_update is False and LocalizationMetrics.higher_is_better is True


def test_localization_empty_compute_is_nan():
    metric = LocalizationMetrics()
    with pytest.warns(UserWarning):
        got = metric.compute()
    assert got["n_images"].item() == 0 and torch.isnan(got["image_auroc"]) and torch.isnan(got["image_bacc"])


@pytest.mark.parametrize(
    ("probs", "masks", "error", "message"),
    [
        (
            torch.rand(2, 4, 4),
            torch.zeros(2, 4, 5),
            ValueError,
            "probs and masks must have the same (B, H, W)",
        ),
        (torch.rand(4, 4), torch.zeros(4, 4), ValueError, "probs must have shape (B, H, W) or (B, 1, H, W)"),
        (torch.rand(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), ValueError, "probs must have shape"),
        (
            torch.full((1, 2, 2), 1.5),
            torch.zeros(1, 2, 2),
            ValueError,
            "probabilities in [0, 1] (apply sigmoid",
        ),
        (torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, 2), ValueError, "probabilities in [0, 1]"),
        (
            torch.rand(1, 2, 2),
            torch.full((1, 2, 2), 255),
            ValueError,
            "values in {0, 1} (1 = tampered), found 255",
        ),
        (torch.ones(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2), TypeError, "must be a floating-point"),
    ],
)
def test_localization_bad_input_raises(probs, masks, error, message):
    with pytest.raises(error, match=re.escape("forgery.metrics.localization: ") + ".*" + re.escape(message)):
        localization_metrics(probs, masks)


def test_localization_bad_args_raise():
    with pytest.raises(ValueError, match=re.escape("threshold must be a float in [0, 1], got 2")):
        LocalizationMetrics(threshold=2)
    with pytest.raises(ValueError, match=re.escape("num_bins must be a positive int, got 0")):
        LocalizationMetrics(num_bins=0)


def test_localization_real_casia_masks():
    """Real CASIA v1 ground truth (255 = tampered, binarised) with a synthetic blurred prediction."""
    gt_dir = REAL / "splicing/casia1_dev/CASIA 1.0 groundtruth/Sp"
    if not gt_dir.is_dir():
        pytest.skip(f"real data absent: {gt_dir}")
    from PIL import Image

    files = sorted(gt_dir.glob("*_gt.png"))[:3]
    assert len(files) == 3
    gts = [np.array(Image.open(f).convert("L").resize((128, 96), Image.NEAREST)) > 127 for f in files]
    masks = torch.from_numpy(np.stack([*gts, np.zeros_like(gts[0])])).float()  # + one authentic image
    g = torch.Generator().manual_seed(0)
    probs = (0.4 * masks + 0.6 * torch.rand(masks.shape, generator=g)).clamp(0, 1)
    ref, got = sk_localization(probs, masks), localization_metrics(probs, masks)
    assert (got["n_images"].item(), got["n_tampered"].item()) == (4, 3)
    for key in ("pixel_f1", "pixel_iou", "pixel_mcc", "pixel_f1_global", "pixel_mcc_global", "image_bacc"):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-6), key
    for key in ("pixel_auroc", "pixel_auroc_global"):
        assert got[key].item() == pytest.approx(ref[key], abs=2e-3), key


# --------------------------------------------------------------------------------------------- detection
def test_detection_matches_sklearn_and_numpy():
    probs, labels, ids = det_data()
    got = detection_metrics(torch.from_numpy(probs), torch.from_numpy(labels), torch.from_numpy(ids))
    assert got["acc"].item() == pytest.approx(accuracy_score(labels, probs > 0.5), abs=1e-12)
    assert got["auc"].item() == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert got["ap"].item() == pytest.approx(average_precision_score(labels, probs), abs=1e-6)
    assert got["eer"].item() == pytest.approx(eer_reference(labels, probs), abs=1e-6)
    keys = np.unique(ids)
    video_p = np.array([probs[ids == k].astype(np.float64).mean() for k in keys])
    video_y = np.array([labels[ids == k][0] for k in keys])
    assert got["video_acc"].item() == pytest.approx(accuracy_score(video_y, video_p > 0.5), abs=1e-12)
    assert got["video_auc"].item() == pytest.approx(roc_auc_score(video_y, video_p), abs=1e-6)
    assert (got["n_frames"].item(), got["n_videos"].item()) == (24 * 8, 24)
    assert set(got) == {"acc", "auc", "eer", "ap", "n_frames", "video_acc", "video_auc", "n_videos"}


@pytest.mark.parametrize(
    ("probs", "labels", "eer"),
    [
        ([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1], 0.0),  # perfectly separable
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 1.0),  # perfectly inverted
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.5),  # ROC point (0.5, 0.5) has FPR = FNR exactly
        # ROC (0,0) (0,1/3) (0,2/3) (1,2/3) (1,1): FPR - FNR goes -1/3 -> 2/3 on the horizontal segment,
        # crossing at t = 1/3, so FPR = FNR = 1/3
        ([0.9, 0.3, 0.6, 0.5], [1, 1, 1, 0], 1 / 3),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied: the diagonal
    ],
)
def test_detection_eer_hand_cases(probs, labels, eer):
    got = detection_metrics(torch.tensor(probs), torch.tensor(labels))["eer"].item()
    assert got == pytest.approx(eer, abs=1e-7)
    assert got == pytest.approx(eer_reference(np.array(labels), np.array(probs)), abs=1e-7)


def test_detection_eer_random_matches_reference():
    rng = np.random.default_rng(3)
    for n in (5, 37, 300):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        probs = np.round(np.clip(0.2 * labels + 0.8 * rng.random(n), 0, 1), 1 if n == 37 else 3)
        got = detection_metrics(torch.from_numpy(probs), torch.from_numpy(labels))
        assert got["eer"].item() == pytest.approx(eer_reference(labels, probs), abs=1e-6), n


def test_detection_class_accumulates_like_functional_and_merges():
    probs, labels, ids = (torch.from_numpy(x) for x in det_data(seed=1))
    ref = detection_metrics(probs, labels, ids, threshold=0.4)
    metric = DetectionMetrics(threshold=0.4)
    for chunk in torch.arange(probs.numel()).split(50):  # frames of one video spread over updates
        metric.update(probs[chunk], labels[chunk].bool(), ids[chunk])
    got = metric.compute()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6, msg=key)
    a, b = DetectionMetrics(threshold=0.4), DetectionMetrics(threshold=0.4)
    a.update(probs[:70], labels[:70], ids[:70])
    b.update(probs[70:], labels[70:], ids[70:])
    a.merge_state(b)
    for key, value in a.compute().items():
        torch.testing.assert_close(value, ref[key], rtol=0, atol=1e-6, msg=key)
    assert {a._reductions[k] for k in ("probs", "labels", "video_ids")} == {dim_zero_cat}


def test_detection_frame_only_and_single_class():
    metric = DetectionMetrics(video_level=False)
    metric.update(torch.tensor([0.2, 0.7, 0.6]), torch.tensor([0, 0, 0]), torch.tensor([1, 1, 2]))
    got = metric.compute()
    assert set(got) == {"acc", "auc", "eer", "ap", "n_frames"} and "video_ids" not in metric._defaults
    assert got["acc"].item() == pytest.approx(1 / 3)
    assert torch.isnan(got["auc"]) and torch.isnan(got["eer"]) and torch.isnan(got["ap"])
    only_fake = detection_metrics(torch.tensor([0.2, 0.7]), torch.tensor([1, 1]))
    assert torch.isnan(only_fake["auc"]) and only_fake["ap"].item() == 1.0


def test_detection_mixed_video_labels_raise():
    probs, labels, ids = torch.rand(6), torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([5, 5, 7, 7, 9, 9])
    with pytest.raises(
        ValueError, match=re.escape("1 video id(s) have frames labelled both real and fake (first: [9])")
    ):
        detection_metrics(probs, labels, ids)
    metric = DetectionMetrics()
    metric.update(probs[:5], labels[:5], ids[:5])
    metric.update(probs[5:], labels[5:], ids[5:])  # the conflict only appears across updates
    with pytest.raises(ValueError, match=re.escape("(first: [9])")):
        metric.compute()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": torch.tensor([0, 2])}, ValueError, "labels must be 0 (real) or 1 (fake), found 2"),
        ({"probs": torch.tensor([0.1, -0.2])}, ValueError, "probs must be probabilities in [0, 1]"),
        ({"probs": torch.rand(2, 1)}, ValueError, "probs must have shape (B,) matching probs"),
        ({"labels": torch.tensor([0, 1, 1])}, ValueError, "labels must have shape (B,) matching probs"),
        ({"video_ids": torch.tensor([0.0, 1.0])}, TypeError, "video_ids must be an integer tensor"),
        ({"probs": torch.tensor([0, 1])}, TypeError, "probs must be floating-point fake probabilities"),
    ],
)
def test_detection_bad_input_raises(kwargs, error, message):
    args = {
        "probs": torch.tensor([0.1, 0.9]),
        "labels": torch.tensor([0, 1]),
        "video_ids": torch.tensor([3, 4]),
    }
    args.update(kwargs)
    with pytest.raises(error, match=re.escape("forgery.metrics.detection: ") + ".*" + re.escape(message)):
        detection_metrics(**args)


def test_detection_video_level_requires_ids():
    with pytest.raises(
        ValueError, match=re.escape("DetectionMetrics(video_level=True).update needs video_ids")
    ):
        DetectionMetrics().update(torch.tensor([0.1]), torch.tensor([0]))


def test_all_tampered_reference_equals_f1_of_an_all_ones_prediction() -> None:
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(5, 12, 12, generator=g) > 0.7).long()
    masks[2] = 0  # an authentic image does not enter the mean
    probs = torch.rand(5, 12, 12, generator=g)
    ref = localization_metrics(torch.ones(5, 12, 12), masks)["pixel_f1"]
    got = localization_metrics(probs, masks)["pixel_f1_all_tampered"]
    assert float(got) == pytest.approx(float(ref), abs=1e-12)
