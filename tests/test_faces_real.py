"""forgery-faces on the shared FF++ c23 / DFDC videos, then forgery-eval and forgery-predict on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgery.cli.eval import evaluate
from forgery.cli.predict import predict_faces
from forgery.data.faces import ExtractSettings, extract_faces, index_videos
from forgery.modules import build_module, load_module
from tests.conftest import SMALL_FACES, real_data

pytestmark = pytest.mark.slow


@pytest.fixture
def faces_ckpt(make_cfg, tmp_path: Path) -> Path:
    """An (untrained) MAT checkpoint with a small backbone, as forgery-train writes it."""
    cfg = make_cfg("train", ["experiment=mat_synth", *SMALL_FACES, "model.net.backbone=tf_efficientnet_b0"])
    module = build_module(cfg.model, cfg.loss, cfg.augmentation)
    module.build_config["data"] = {"name": "faces_synth", "image_size": 64}
    module.on_save_checkpoint(ckpt := {"state_dict": module.state_dict()})
    path = tmp_path / "mat.ckpt"
    torch.save(ckpt, path)
    return path


def test_extract_ffpp_then_eval_frame_and_video_metrics(make_cfg, faces_ckpt: Path, tmp_path: Path) -> None:
    root = real_data("faces", "ffpp_c23")
    videos = index_videos("ffpp", root, "test")
    present = sorted(v.key for v in videos.videos)
    # the split file implies more videos than this partial download has: counted, not dropped silently
    assert videos.missing and len(present) == 7
    out = tmp_path / "crops"
    report = extract_faces(
        videos, out, ExtractSettings(frames_per_video=4, stride=5, size=64), progress=False
    )
    assert report["frames_with_face"] / report["frames_sampled"] >= 0.9
    cfg = make_cfg(
        "eval",
        [
            f"ckpt_path={faces_ckpt}",
            "data=ffpp",
            f"data.root={out}",
            "data.image_size=64",
            "data.num_workers=0",
            "data.balance=false",
        ],
    )
    metrics, objects = evaluate(cfg)
    test_set = objects["datamodule"].datasets["test"]
    assert test_set.video_keys == present
    assert "ffpp/Deepfakes/c23/519_515" in present and "ffpp/youtube/c23/519" in present
    assert metrics["test/n_videos"] == 7 and metrics["test/n_frames"] == len(test_set)
    for key in ("acc", "auc", "eer", "ap", "video_acc", "video_auc"):
        assert f"test/{key}" in metrics
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["dataset"] == "ffpp" and saved["size"] == len(test_set)


def test_extract_dfdc_finds_faces(tmp_path: Path) -> None:
    root = real_data("faces", "dfdc_sample")
    videos = index_videos("dfdc", root, "train")
    assert len(videos.videos) == 3 and videos.missing
    report = extract_faces(
        videos, tmp_path / "crops", ExtractSettings(frames_per_video=5, stride=10, size=64), progress=False
    )
    assert report["frames_with_face"] / report["frames_sampled"] >= 0.9


def test_predict_scores_frames_and_video(faces_ckpt: Path) -> None:
    video = real_data(
        "faces", "ffpp_c23", "manipulated_sequences", "Deepfakes", "c23", "videos", "519_515.mp4"
    )
    module = load_module(faces_ckpt, kind="faces")
    result = predict_faces(module, [video], image_size=64, frames=3, stride=5)[str(video)]
    assert sorted(result["frames"]) == [0, 5, 10] and result["no_face"] == []
    probs = list(result["frames"].values())
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert result["score"] == pytest.approx(sum(probs) / 3)
