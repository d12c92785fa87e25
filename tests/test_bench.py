"""forgery-bench: presets compose, cases expand, a tiny run writes a record that follows the schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from forgery.bench import check_schema, expand_cases, format_table
from forgery.bench.evalmem import eval_memory_growth
from forgery.bench.extraction import make_face_video
from forgery.cli.bench import bench, compose_groups

TINY = [
    "bench.isolate=false",
    "bench.threads=1",
    "bench.peak_seconds=0.05",
    "bench.warmup=1",
    "bench.steps=1",
    "bench.cases.mtse_net.size=32",
    'bench.cases.mtse_net.overrides=["model.net.width=4"]',
    "bench.cases.mat.size=64",
    "bench.loaders.splicing.images=2",
    "bench.loaders.splicing.repeats=1",
    "bench.loaders.faces.images=2",
    "bench.loaders.faces.repeats=1",
    "bench.loaders.faces.size=64",
    "bench.eval_memory.images=[4,8]",
    "bench.eval_memory.size=32",
    "bench.eval_memory.batch_size=4",
    'bench.eval_models.mtse_net.overrides=["model.net.width=4"]',
    "bench.extraction.frames=2",
    "bench.extraction.settings.frames_per_video=1",
    "bench.extraction.settings.max_frame=2",
]


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_presets_compose_and_expand(make_cfg, preset: str) -> None:
    cfg = make_cfg("bench", [f"bench={preset}"])
    cases = expand_cases(OmegaConf.to_container(cfg.bench.cases, resolve=True))
    labels = [c["label"] for c in cases]
    if preset == "quick":
        assert labels == ["mtse_net", "mtse_net", "mat", "mat"]
        assert [c["mode"] for c in cases] == ["train", "infer", "train", "infer"]
    else:
        # 2 precisions x 2 layouts for each model's recipe step, plus the single cases
        assert labels.count("mtse_net") == 4 and labels.count("mat") == 4
        assert {(c["precision"], c["channels_last"]) for c in cases if c["label"] == "mat"} == {
            ("32-true", True),
            ("32-true", False),
            ("bf16-mixed", True),
            ("bf16-mixed", False),
        }
        assert [c["compile"] for c in cases if c["label"].endswith("_compile")] == [True, True]
        assert cfg.bench.eval_memory.images == [100, 2000, 8000]  # the last span past the bootstrap bound
    unique = {json.dumps([c["groups"], c["overrides"]], sort_keys=True): c for c in cases}
    for case in unique.values():
        groups = compose_groups(case["groups"], case["overrides"])
        assert groups["model"]["_target_"].startswith("forgery.modules.")
        assert groups["loss"]["_target_"].startswith("forgery.losses.")
        if case["groups"].get("augmentation") == "none":
            assert groups["augmentation"] is None


def test_mat_case_composes_agda_and_no_agda(make_cfg) -> None:
    with_agda = compose_groups({"model": "mat", "loss": "mat", "augmentation": "agda"})
    without = compose_groups({"model": "mat", "loss": "mat", "augmentation": "none"})
    assert with_agda["augmentation"]["_target_"] == "forgery.augment.agda.AGDA"
    assert without["augmentation"] is None


@pytest.mark.slow  # ~20 s on 2 shared cores
def test_tiny_quick_run_writes_schema_valid_json(make_cfg, tmp_path: Path) -> None:
    mine = make_face_video(tmp_path / "mine.mp4", frames=2, size=(240, 320))  # a user's own video
    cfg = make_cfg("bench", [*TINY, f"out_dir={tmp_path}/bench", f"bench.extraction.videos=[{mine}]"])
    payload, path = bench(cfg)
    assert path == tmp_path / "bench" / "quick-cpu.json"
    written = json.loads(path.read_text())
    check_schema(written)
    assert written["preset"] == "quick" and written["machine"]["device"] == "cpu"
    assert [(s["label"], s["mode"]) for s in written["steps"]] == [
        ("mtse_net", "train"),
        ("mtse_net", "infer"),
        ("mat", "train"),
        ("mat", "infer"),
    ]
    by = {(s["label"], s["mode"]): s for s in written["steps"]}
    for s in written["steps"]:
        assert s["batch"] == 2 and s["precision"] == "32-true" and s["steps"] == 1
        assert s["flops_per_image"] > 0 and s["params"] > 0
        assert s["step_s"]["min"] <= s["step_s"]["median"] <= s["step_s"]["max"]
        assert s["images_per_s"] == pytest.approx(2 / s["step_s"]["median"])
        assert s["memory_kind"] == "rss" and s["peak_memory_mb"] > 0
    # a training step is forward + backward (about 3x the forward's FLOPs); MAT's has the AGDA pass too
    assert by[("mtse_net", "train")]["flops_per_image"] > 2.5 * by[("mtse_net", "infer")]["flops_per_image"]
    assert by[("mat", "train")]["flops_per_image"] > 5 * by[("mat", "infer")]["flops_per_image"]
    assert by[("mtse_net", "train")]["channels_last"] is True  # the model config's default
    assert [ld["name"] for ld in written["loaders"]] == ["splicing_jpeg", "face_crop_png"]
    assert all(ld["images_per_s_per_worker"] > 0 for ld in written["loaders"])
    runs = written["eval_memory"]["runs"]
    assert [(r["task"], r["images"]) for r in runs] == [
        ("splicing", 4),
        ("splicing", 8),
        ("faces", 4),
        ("faces", 8),
    ]
    assert set(written["eval_memory"]["growth"]) == {"splicing", "faces"}
    assert "test/pixel_f1" in runs[0]["metrics"] and "test/auc" in runs[2]["metrics"]
    ex = written["extraction"]
    assert ex["frames_sampled"] == 1 and ex["frames_with_face"] == 1  # the generated video's face is found
    assert ex["repeats"] == 1 and ex["seconds_all"] == [ex["seconds"]]
    assert [(v["video"], v["width"], v["height"], v["frames_sampled"]) for v in ex["videos"]] == [
        (str(mine), 320, 240, 1)
    ]
    table = path.with_suffix(".md").read_text()
    assert table == format_table(written) and "| mine.mp4 | 320x240 |" in table
    assert table.count("| mtse_net |") == 2 and "splicing_jpeg" in table


def test_sections_set_to_null_are_left_out(make_cfg, tmp_path: Path) -> None:
    # e.g. only the evaluation memory: forgery-bench bench=full bench.cases=null bench.loaders=null ...
    off = ["bench.cases=null", "bench.loaders=null", "bench.extraction=null", "bench.eval_models.mat=null"]
    cfg = make_cfg("bench", [*TINY, *off, "bench.eval_memory.images=[4]", f"out_dir={tmp_path}"])
    payload, path = bench(cfg)
    check_schema(json.loads(path.read_text()))
    assert payload["steps"] == [] and payload["loaders"] == [] and payload["extraction"] is None
    assert [(r["task"], r["images"]) for r in payload["eval_memory"]["runs"]] == [("splicing", 4)]


def test_absent_extraction_video_is_named_before_anything_runs(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("bench", [*TINY, f"out_dir={tmp_path}", f"bench.extraction.videos=[{tmp_path}/no.mp4]"])
    with pytest.raises(FileNotFoundError, match=r"bench.extraction.videos: .*no.mp4: no such video file"):
        bench(cfg)
    assert not list(tmp_path.iterdir())


def test_check_schema_names_what_is_wrong() -> None:
    good = {
        "schema_version": 1,
        "preset": "x",
        "created": "now",
        "command": "c",
        "machine": {},
        "peak_flops_per_s": {},
        "steps": [],
        "loaders": [],
        "eval_memory": {"runs": [], "growth": {}},
        "extraction": None,
    }
    check_schema(good)
    bad = copy.deepcopy(good)
    del bad["command"]
    bad["steps"] = [{"label": "m", "mode": "fit"}]
    bad["loaders"] = [{"name": "l", "images": "2"}]
    with pytest.raises(ValueError) as err:
        check_schema(bad)
    text = str(err.value)
    assert "bench: missing 'command'" in text
    assert "steps[0].mode: 'fit' is not train or infer" in text
    assert "steps[0]: missing 'step_s'" in text
    assert "loaders[0].images: expected" in text


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_conv_backward_flops_are_two_forwards_for_grouped_convs(groups: int) -> None:
    """A convolution's input and weight gradients cost one forward convolution each, grouped or not
    (torch's own formula multiplies a depthwise weight gradient by the channel count)."""
    import torch

    from forgery.bench.flops import count_flops

    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 16, 10, 10, requires_grad=True)
    forward = 2 * 2 * 16 * (16 // groups) * 9 * 10 * 10
    assert count_flops(lambda: conv(x)) == forward
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward
    frozen = torch.randn(2, 16, 10, 10)  # no input gradient: one forward for the weight's
    assert count_flops(lambda: conv(frozen).sum().backward()) == 2 * forward


def test_eval_memory_growth_per_span() -> None:
    runs = [
        {"task": "splicing", "images": n, "peak_memory_mb": mb}
        for n, mb in ((2000, 1121.0), (100, 1030.0), (8000, 1349.0))
    ] + [{"task": "faces", "images": n, "peak_memory_mb": 1000.0} for n in (100, 400)]
    g = eval_memory_growth(runs)
    s = g["splicing"]
    assert (s["images_min"], s["images_max"], s["growth_mb"]) == (100, 8000, 319.0)
    assert s["growth_mb_per_1000_images"] == pytest.approx(319.0 * 1000 / 7900)
    assert [(sp["images"], sp["growth_mb"]) for sp in s["spans"]] == [
        ([100, 2000], 91.0),
        ([2000, 8000], 228.0),
    ]
    assert s["spans"][1]["growth_mb_per_1000_images"] == pytest.approx(38.0)
    assert g["faces"]["growth_mb"] == 0.0 and len(g["faces"]["spans"]) == 1
