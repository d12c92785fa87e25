"""Issue 12 §4 for videos: aggregation of frame probabilities, ECE, the validation-tuned threshold, and the
bootstrap over videos; against pandas / sklearn / NumPy."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score
from torchmetrics.utilities.data import dim_zero_cat

from forgery.metrics import bootstrap as bs
from forgery.metrics.detection import (
    DetectionMetrics,
    balanced_accuracy_threshold,
    detection_metrics,
    detection_stat_fn,
    expected_calibration_error,
    video_scores,
)
from tests.test_metrics import eer_reference

AGG = {
    "mean": lambda s: s.mean(),
    "max": lambda s: s.max(),
    "median": lambda s: s.median(),  # pandas / numpy: mean of the two middle values for even counts
    "topk_mean": lambda s: s.nlargest(3).mean(),
}


def video_data(seed: int = 0, n_videos: int = 30):
    """Videos of 1-9 frames (some fewer than topk = 3), shuffled, sparse int64 ids, float32 probs, ties."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 10, n_videos)
    vid_labels = rng.integers(0, 2, n_videos)
    vid_labels[:2] = [0, 1]
    ids = np.repeat(10**9 + rng.choice(10**6, n_videos, replace=False), counts)
    labels = np.repeat(vid_labels, counts)
    probs = np.clip(np.round(0.25 * labels + 0.75 * rng.random(labels.size), 2), 0, 1).astype(np.float32)
    order = rng.permutation(labels.size)
    return probs[order], labels[order], ids[order]


def np_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """ECE with sklearn's uniform calibration bins: sum over non-empty bins of n_b / N |frac_pos - mean_p|."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p), minlength=n_bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / len(p) * np.abs(prob_true - prob_pred)))


def tensors(*xs):
    return tuple(torch.from_numpy(np.array(x)) for x in xs)


@pytest.mark.parametrize("aggregation", list(AGG))
def test_video_aggregation_matches_pandas(aggregation: str) -> None:
    probs, labels, ids = video_data()
    frame = pd.DataFrame({"id": ids, "p": probs.astype(np.float64), "y": labels})
    ref = frame.groupby("id").agg(p=("p", AGG[aggregation]), y=("y", "first"))
    score, vlab, inv = video_scores(*tensors(probs.astype(np.float64), labels, ids), aggregation, topk=3)
    np.testing.assert_allclose(score.numpy(), ref.p.to_numpy(), rtol=0, atol=1e-12)
    assert np.array_equal(vlab.numpy(), ref.y.to_numpy()) and inv.shape == labels.shape
    got = detection_metrics(*tensors(probs, labels, ids), aggregation=aggregation, topk=3)
    assert got["video_acc"].item() == pytest.approx(accuracy_score(ref.y, ref.p > 0.5), abs=1e-12)
    assert got["video_auc"].item() == pytest.approx(roc_auc_score(ref.y, ref.p), abs=1e-6)
    assert got["n_videos"].item() == 30


def test_ece_frame_and_video_match_sklearn_bins() -> None:
    probs, labels, ids = video_data(seed=1)
    probs[:3] = [0.0, 0.4, 1.0]  # on bin edges: (lo, hi], the first bin [0, hi]
    got = detection_metrics(*tensors(probs, labels, ids), ece_bins=10)
    assert got["ece"].item() == pytest.approx(np_ece(labels, probs.astype(np.float64), 10), abs=1e-12)
    video = (
        pd.DataFrame({"id": ids, "p": probs.astype(np.float64), "y": labels})
        .groupby("id")
        .agg(p=("p", "mean"), y=("y", "first"))
    )
    assert got["video_ece"].item() == pytest.approx(
        np_ece(video.y.to_numpy(), video.p.to_numpy(), 10), abs=1e-12
    )
    one = expected_calibration_error(torch.tensor([0.9, 0.9]), torch.tensor([1, 0]), 5)
    assert one.item() == pytest.approx(0.4)  # one bin: |0.5 - 0.9|
    assert "ece" not in detection_metrics(*tensors(probs, labels, ids))  # only when asked for


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.2, 0.8], [0, 1], 0.5),  # every t in [0.2, 0.8) is perfect: the candidate closest to 0.5
        ([0.1, 0.2, 0.3, 0.9], [0, 0, 1, 1], 0.25),  # the midpoint of the only perfect gap
        # inverted scores: "all fake" (t = 0) and "all real" (t = 1) tie at 0.5, equally far from 0.5
        ([0.9, 0.95, 0.1, 0.05], [0, 0, 1, 1], 0.0),
    ],
)
def test_balanced_accuracy_threshold_hand_cases(scores, labels, expected) -> None:
    got = balanced_accuracy_threshold(torch.tensor(scores), torch.tensor(labels)).item()
    assert got == pytest.approx(expected)


def test_balanced_accuracy_threshold_is_optimal_against_sklearn() -> None:
    rng = np.random.default_rng(2)
    for n in (7, 50, 400):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
        t = balanced_accuracy_threshold(*tensors(s, y)).item()
        grid = np.unique(np.concatenate([np.linspace(0, 1, 1001), s, np.nextafter(s, 2)]))
        pred = s[None, :] > grid[:, None]  # every threshold of the grid at once
        bacc = ((pred & (y == 1)).sum(1) / (y == 1).sum() + (~pred & (y == 0)).sum(1) / (y == 0).sum()) / 2
        assert balanced_accuracy_score(y, (s > t).astype(int)) == pytest.approx(bacc.max(), abs=1e-12), n
    assert torch.isnan(balanced_accuracy_threshold(torch.tensor([0.2, 0.3]), torch.tensor([1, 1])))


def test_val_thresholds_carried_to_test_metrics() -> None:
    probs, labels, ids = video_data(seed=3)
    val = DetectionMetrics()
    vp, vl, vi = video_data(seed=4)
    for chunk in np.array_split(np.arange(vl.size), 3):
        val.update(*tensors(vp[chunk], vl[chunk], vi[chunk]))
    tuned = val.balanced_thresholds()
    frame_ref = balanced_accuracy_threshold(*tensors(vp, vl))
    video = (
        pd.DataFrame({"id": vi, "p": vp.astype(np.float64), "y": vl})
        .groupby("id")
        .agg(p=("p", "mean"), y=("y", "first"))
    )
    video_ref = balanced_accuracy_threshold(*tensors(video.p.to_numpy(), video.y.to_numpy()))
    assert tuned.tolist() == pytest.approx([frame_ref.item(), video_ref.item()], abs=0)
    test = DetectionMetrics()
    test.update(*tensors(probs, labels, ids))
    test.val_thresholds = tuple(tuned.tolist())
    got = test.compute()
    tf, tv = tuned.tolist()
    assert got["acc_valthr"].item() == pytest.approx(accuracy_score(labels, probs > tf), abs=1e-12)
    tvid = (
        pd.DataFrame({"id": ids, "p": probs.astype(np.float64), "y": labels})
        .groupby("id")
        .agg(p=("p", "mean"), y=("y", "first"))
    )
    assert got["video_acc_valthr"].item() == pytest.approx(accuracy_score(tvid.y, tvid.p > tv), abs=1e-12)
    assert (got["valthr"].item(), got["video_valthr"].item()) == (tf, tv)
    assert got["acc"].item() == pytest.approx(accuracy_score(labels, probs > 0.5), abs=1e-12)  # still beside
    test.val_thresholds = (float("nan"), float("nan"))  # a checkpoint without validation: NaN, not 0.5
    nan = test.compute()
    assert torch.isnan(nan["acc_valthr"]) and torch.isnan(nan["video_acc_valthr"])


def test_detection_stat_fn_at_unit_weights_is_the_metric() -> None:
    probs, labels, ids = tensors(*video_data(seed=5))
    kw = dict(aggregation="median", ece_bins=8, val_thresholds=(0.45, 0.55))
    ref = detection_metrics(probs, labels, ids, **kw)
    stat, n_units = detection_stat_fn(probs.double(), labels, ids, 0.5, "median", 5, 8, (0.45, 0.55))
    assert n_units == ref["n_videos"].item()
    got = stat(torch.ones(1, n_units, dtype=torch.float64))
    assert set(got) == set(ref) - {"n_frames", "n_videos", "valthr", "video_valthr"}
    for key, value in got.items():
        assert value.item() == pytest.approx(ref[key].item(), abs=1e-6), (
            key
        )  # auc/ap: float32 in torchmetrics


def test_bootstrap_over_videos_equals_direct_resampling() -> None:
    probs, labels, ids = video_data(seed=6, n_videos=16)
    p64 = probs.astype(np.float64)
    stat, V = detection_stat_fn(*tensors(p64, labels, ids), 0.5, "mean", 5, 10, None)
    got = bs.bootstrap_values(stat, V, n=30, seed=11)
    uniq = np.unique(ids)
    frames_of = [np.flatnonzero(ids == u) for u in uniq]
    vp = np.array([p64[f].mean() for f in frames_of])
    vy = np.array([labels[f][0] for f in frames_of])
    for r, draw in enumerate(np.random.default_rng(11).integers(0, V, size=(30, V))):
        f = np.concatenate([frames_of[v] for v in draw])  # all frames of each drawn video, with repeats
        y, s = labels[f], p64[f]
        both = 0 < y.sum() < y.size
        for key, ref in (
            ("acc", accuracy_score(y, s > 0.5)),
            ("auc", roc_auc_score(y, s) if both else np.nan),
            ("ap", average_precision_score(y, s) if y.any() else np.nan),
            ("eer", eer_reference(y, s) if both else np.nan),
            ("ece", np_ece(y, s, 10)),
            ("video_acc", accuracy_score(vy[draw], vp[draw] > 0.5)),
            ("video_auc", roc_auc_score(vy[draw], vp[draw]) if 0 < vy[draw].sum() < V else np.nan),
        ):
            assert got[key][r].item() == pytest.approx(ref, abs=1e-9, nan_ok=True), (key, r)


def test_detection_intervals_contain_point_and_ignore_frame_order() -> None:
    probs, labels, ids = tensors(*video_data(seed=7, n_videos=60))
    metric = DetectionMetrics(ece_bins=10)
    metric.update(probs, labels, ids)
    point, iv = metric.compute(), metric.intervals(n=300, seed=0)
    assert set(iv) == {"acc", "auc", "eer", "ap", "ece", "video_acc", "video_auc", "video_ece"}
    for key, (lo, hi) in iv.items():
        assert lo <= point[key].item() <= hi and lo < hi, key
    perm = torch.randperm(probs.numel(), generator=torch.Generator().manual_seed(0))
    a, b = DetectionMetrics(ece_bins=10), DetectionMetrics(ece_bins=10)
    a.update(probs[perm[:100]], labels[perm[:100]], ids[perm[:100]])
    b.update(probs[perm[100:]], labels[perm[100:]], ids[perm[100:]])
    a.merge_state(b)  # another order, as from another number of processes
    assert a.intervals(n=300, seed=0) == iv
    frames = DetectionMetrics(video_level=False)
    frames.update(probs, labels)
    shuffled = DetectionMetrics(video_level=False)
    shuffled.update(probs[perm], labels[perm])
    assert frames.intervals(n=200, seed=0) == shuffled.intervals(n=200, seed=0)
    assert {a._reductions[k] for k in ("probs", "labels", "video_ids")} == {dim_zero_cat}


def test_detection_bad_video_args_raise() -> None:
    with pytest.raises(
        ValueError, match=re.escape("aggregation must be one of ['mean', 'max', 'topk_mean', 'median']")
    ):
        DetectionMetrics(aggregation="sum")
    with pytest.raises(ValueError, match="topk must be a positive int"):
        detection_metrics(torch.tensor([0.1]), torch.tensor([0]), torch.tensor([0]), topk=0)
    with pytest.raises(ValueError, match="ece_bins must be a positive int or None"):
        DetectionMetrics(ece_bins=0)


def test_faces_module_keeps_val_thresholds_in_checkpoints(make_cfg) -> None:
    from forgery.modules import build_module
    from tests.conftest import SMALL_FACES

    cfg = make_cfg(
        "train",
        [
            "experiment=mat_synth",
            *SMALL_FACES,
            "model.net.backbone=tf_efficientnet_b0",
            "metrics.video_aggregation=max",
        ],
    )
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.set_metric_options(cfg.metrics)
    assert module.test_metrics.aggregation == "max" and module.test_metrics.ece_bins == 15
    state = module.state_dict()
    assert torch.isnan(state["val_thresholds"]).all() and state["val_thresholds"].dtype == torch.float64
    state["val_thresholds"] = torch.tensor([0.3, 0.6], dtype=torch.float64)
    module.load_state_dict(state)
    assert module.val_thresholds.tolist() == [0.3, 0.6]
    del state["val_thresholds"]  # a checkpoint from before: loads, thresholds unset
    module.load_state_dict(state)
    assert torch.isnan(module.val_thresholds).all()


def test_per_method_metrics_are_reals_plus_that_methods_fakes() -> None:
    from forgery.metrics.detection import detection_metrics, per_method_metrics

    keys = [
        "ffpp/original/c23/000",
        "ffpp/original/c23/001",
        "ffpp/Deepfakes/c23/000_001",
        "ffpp/Deepfakes/c23/001_000",
        "ffpp/FaceSwap/c23/000_001",
        "ffpp/FaceSwap/c23/001_000",
    ]
    ids = torch.arange(6).repeat_interleave(3)
    labels = (ids >= 2).long()
    probs = torch.linspace(0.05, 0.95, 18).double()
    got = per_method_metrics(probs, labels, ids, keys)
    assert sorted(got) == ["Deepfakes", "FaceSwap"]
    for method, videos in (("Deepfakes", [0, 1, 2, 3]), ("FaceSwap", [0, 1, 4, 5])):
        keep = torch.isin(ids, torch.tensor(videos))
        ref = detection_metrics(probs[keep], labels[keep], ids[keep])
        assert got[method]["n_frames"] == 12 and got[method]["n_videos"] == 4
        for k, v in ref.items():
            assert got[method][k] == pytest.approx(float(v)), (method, k)
    assert per_method_metrics(probs[:12], labels[:12], ids[:12], keys) == {}  # one fake method: no split
