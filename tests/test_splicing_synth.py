"""Tests for the embedded synthetic splicing dataset (forgery.data.splicing.synth)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image
from scipy import ndimage

from forgery.data.splicing import synth
from forgery.data.splicing.synth import (
    CSV_COLUMNS,
    POST_JPEG_QUALITY,
    POST_PROB,
    build_splicing_synth,
    dataset_tag,
    read_split,
)

PARAMS = {"seed": 0, "size": 64, "n_train": 12, "n_val": 4, "n_test": 8, "authentic_fraction": 0.25}


def _tag(**overrides: object) -> str:
    return dataset_tag(**{**PARAMS, **overrides})


def _files(tag_dir: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every image, mask and CSV of a build."""
    paths = [p for p in tag_dir.rglob("*") if p.is_file()]
    return {str(p.relative_to(tag_dir)): p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_splicing_synth(tmp_path_factory.mktemp("synth"), **PARAMS)


@pytest.fixture(scope="module")
def photos() -> tuple[dict, dict[str, list[str]]]:
    loaded, _ = synth._load_photos()
    return loaded, synth._split_photos(loaded, PARAMS["seed"])


def test_layout_and_tag(built: Path) -> None:
    assert built.name == "splicing_synth-v6-seed0-64px-12.4.8-auth0.25"
    assert dataset_tag(seed=0, size=256, n_train=800, n_val=100, n_test=200, authentic_fraction=0.2) == (
        "splicing_synth-v6-seed0-256px-800.100.200-auth0.2"
    )
    assert _tag(authentic_fraction=1 / 3).endswith("-auth0.3333333333333333")  # exact, no collisions
    assert built.stat().st_mode & 0o777 == 0o755  # not the 0700 of the temp folder it was built in
    for split, n in (("train", 12), ("val", 4), ("test", 8)):
        assert len(list((built / split / "images").glob("*.png"))) == n
        assert len(list((built / split / "masks").glob("*.png"))) == n
        header = (built / f"{split}.csv").read_text().splitlines()[0]
        assert header == ",".join(CSV_COLUMNS)
    meta = json.loads((built / "meta.json").read_text())
    assert meta["generator_version"] == synth.GENERATOR_VERSION
    assert meta["params"] == PARAMS
    assert meta["stats"]["train"]["tampered"] == 9 and meta["stats"]["train"]["authentic"] == 3


@pytest.mark.parametrize(
    "change",
    [{"seed": 1}, {"size": 96}, {"n_train": 13}, {"n_val": 5}, {"n_test": 9}, {"authentic_fraction": 0.3}],
)
def test_tag_changes_with_every_parameter(change: dict) -> None:
    assert _tag(**change) != _tag()


def test_deterministic_and_seed_dependent(built: Path, tmp_path: Path) -> None:
    again = build_splicing_synth(tmp_path / "again", **PARAMS)
    assert _files(again) == _files(built)  # byte-identical images, masks, CSVs and meta.json
    other = build_splicing_synth(tmp_path / "other", **{**PARAMS, "seed": 1})
    ref, new = _files(built), _files(other)
    images = [k for k in ref if "/images/" in k]
    assert len(images) == 24
    assert sum(ref[k] != new[k] for k in images) == len(images)


def test_single_sample_regenerates_alone(built: Path, photos: tuple) -> None:
    loaded, split_photos = photos
    for row in read_split(built, "test"):
        index = int(row["id"].split("_")[1])
        s = synth._render_sample(
            loaded, split_photos["test"], seed=0, split="test", index=index, label=row["label"], size=64
        )
        assert np.array_equal(s.image, np.asarray(Image.open(row["image"])))
        assert np.array_equal(s.mask, np.asarray(Image.open(row["mask"])))
        assert (s.host, s.donor) == (row["host"], row["donor"])


def test_photo_splits_disjoint(built: Path) -> None:
    meta = json.loads((built / "meta.json").read_text())
    split = {k: set(v) for k, v in meta["photo_split"].items()}
    assert set(split) == {"train", "val", "test"}
    assert all(len(v) >= 2 for v in split.values())
    assert not (split["train"] & split["val"]) and not (split["train"] & split["test"])
    assert not (split["val"] & split["test"])
    assert split["train"] | split["val"] | split["test"] == set(synth._PHOTO_FILES)
    used = {}
    for name in ("train", "val", "test"):
        rows = read_split(built, name)
        used[name] = {r["host"] for r in rows} | {r["donor"] for r in rows if r["donor"]}
        assert used[name] <= split[name]
    assert not used["test"] & (used["train"] | used["val"])
    # The stereo pair shows one scene: both halves must share a split.
    side = {n: s for s, names in split.items() for n in names}
    assert side["motorcycle_left"] == side["motorcycle_right"]


def test_photo_split_fractions_and_modes(photos: tuple) -> None:
    loaded, split_photos = photos
    groups = {s: {loaded[n].group for n in names} for s, names in split_photos.items()}
    n_groups = sum(len(g) for g in groups.values())
    assert n_groups == len(synth._PHOTO_FILES) - 1  # motorcycle_left/right form one group
    assert len(groups["test"]) == 5 and len(groups["val"]) == 3 and len(groups["train"]) == 10
    for names in split_photos.values():  # stratified: both colour and gray photos in every split
        assert {loaded[n].gray for n in names} == {True, False}


def test_masks_labels_and_images(built: Path) -> None:
    for split, n in (("train", 12), ("val", 4), ("test", 8)):
        rows = read_split(built, split)
        assert [r["id"] for r in rows] == [f"{split}_{i:05d}" for i in range(n)]
        assert sum(r["label"] == 0 for r in rows) == round(n * 0.25)
        for r in rows:
            with Image.open(r["image"]) as im:
                assert (im.mode, im.size) == ("RGB", (64, 64))
                image = np.asarray(im)
            with Image.open(r["mask"]) as im:
                assert (im.mode, im.size) == ("L", (64, 64))
                mask = np.asarray(im)
            assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
            assert set(np.unique(mask).tolist()) <= {0, 255}
            area = float((mask > 0).mean())
            assert r["label"] == int(area > 0)
            if r["label"]:
                assert 0.01 <= area <= 0.35
                assert r["donor"] in synth._PHOTO_FILES
            else:
                assert r["donor"] == ""


def test_gray_hosts_stay_gray(built: Path, photos: tuple) -> None:
    loaded, _ = photos
    gray_rows = [r for s in ("train", "val", "test") for r in read_split(built, s) if loaded[r["host"]].gray]
    assert gray_rows
    for r in gray_rows:  # a colour donor in a gray host would be a trivial chroma shortcut
        image = np.asarray(Image.open(r["image"]))
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
        if r["donor"]:
            assert loaded[r["donor"]].gray


def test_cached_second_call_does_not_rebuild(built: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in [built / "meta.json", built / "train.csv", built]}
    assert build_splicing_synth(built.parent, **PARAMS) == built
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_force_rebuilds_identically(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "force"
    first = build_splicing_synth(root, **PARAMS)
    before = (first / "meta.json").stat().st_mtime_ns
    (first / "train.csv").write_text("tampered with\n")
    assert build_splicing_synth(root, **PARAMS, force=True) == first
    assert (first / "meta.json").stat().st_mtime_ns != before
    assert _files(first) == _files(built)
    assert sorted(p.name for p in root.iterdir()) == [first.name]


def test_leftover_temp_dir_does_not_break_rebuild(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "leftover"
    dead = root / f".{_tag()}.tmp-999999999-abcd"  # pid above pid_max: its build is certainly gone
    (dead / "train" / "images").mkdir(parents=True)
    (dead / "train" / "images" / "train_00000.png").write_bytes(b"half-written")
    alive = root / f".{_tag()}.tmp-{os.getpid()}-live"  # a build still running must not be disturbed
    alive.mkdir()
    out = build_splicing_synth(root, **PARAMS)
    assert _files(out) == _files(built)
    assert not dead.exists() and alive.exists()


def test_interrupted_build_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_save = synth._save_png

    def failing_save(array: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        real_save(array, path)

    monkeypatch.setattr(synth, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        build_splicing_synth(tmp_path, **PARAMS)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synth, "_save_png", real_save)
    assert (build_splicing_synth(tmp_path, **PARAMS) / "meta.json").is_file()


def test_existing_folder_without_meta_is_refused(tmp_path: Path) -> None:
    (tmp_path / _tag()).mkdir()
    with pytest.raises(FileExistsError, match=r"exists but has no meta\.json"):
        build_splicing_synth(tmp_path, **PARAMS)


def test_paste_changes_only_the_masked_region(photos: tuple) -> None:
    loaded, split_photos = photos
    kw = {"seed": 0, "split": "train", "label": 1, "size": 128}
    for index in range(12):
        args = (loaded, split_photos["train"])
        spliced = synth._render_sample(*args, index=index, post=False, **kw)
        host = synth._render_sample(*args, index=index, post=False, paste=False, **kw)
        mask = spliced.mask > 0
        diff = np.abs(spliced.image.astype(int) - host.image.astype(int)).max(axis=2)
        # Before post-processing only the feathered paste differs: nothing farther than 6 px from the mask.
        assert ndimage.distance_transform_edt(~mask)[diff > 0].max() <= 6.0
        assert diff[mask].mean() > 8.0
        # After the whole-image degradations (identical draws for both) the change stays around the mask.
        spliced = synth._render_sample(*args, index=index, **kw)
        host = synth._render_sample(*args, index=index, paste=False, **kw)
        assert spliced.post == host.post
        diff = np.abs(spliced.image.astype(int) - host.image.astype(int)).sum(axis=2)
        near = ndimage.binary_dilation(mask, iterations=8)
        assert diff[near].sum() >= 0.9 * diff.sum()


def test_authentic_and_tampered_share_host_and_post(photos: tuple) -> None:
    loaded, split_photos = photos
    for index in range(6):
        kw = {"seed": 3, "split": "val", "index": index, "size": 64}
        authentic = synth._render_sample(loaded, split_photos["val"], label=0, **kw)
        host_only = synth._render_sample(loaded, split_photos["val"], label=1, paste=False, **kw)
        assert np.array_equal(authentic.image, host_only.image)
        assert authentic.post == host_only.post and authentic.host == host_only.host
        assert not authentic.mask.any()


def test_postprocess_rates_match_spec() -> None:
    counts = {"jpeg_quality": 0, "blur_sigma": 0, "resize": 0}
    qualities = []
    image = np.full((32, 32, 3), 128, np.uint8)
    n = 2000
    for i in range(n):
        _, params = synth._postprocess(image, np.random.default_rng([7, i]))
        for k in counts:
            counts[k] += k in params
        if "jpeg_quality" in params:
            qualities.append(params["jpeg_quality"])
    for name, prob in POST_PROB.items():
        assert abs(counts[name] / n - prob) < 0.04, name
    assert (min(qualities), max(qualities)) == POST_JPEG_QUALITY


def test_donor_noise_differs_from_host_by_the_gap() -> None:
    lo, hi = synth._NOISE_GAP
    for host_sigma in (0.0, 4.0, 8.0):
        rng = np.random.default_rng(int(host_sigma))
        donors = np.array([synth._donor_sigma(host_sigma, rng) for _ in range(2000)])
        gaps = np.abs(donors - host_sigma)
        assert donors.min() >= 0.0 and gaps.min() >= lo and gaps.max() <= hi
        assert gaps.min() < lo + 0.1 and gaps.max() > hi - 0.1  # the whole range is drawn
        below = (donors < host_sigma).mean()
        # a quieter donor needs room below the host: P = 0.5 * P(gap <= host sigma)
        assert abs(below - 0.5 * np.clip((host_sigma - lo) / (hi - lo), 0, 1)) < 0.04
    # the pixels carry the drawn level
    noisy = synth._add_noise(np.full((256, 256, 3), 128, np.uint8), 10.0, np.random.default_rng(0))
    assert abs(float(noisy.std()) - 10.0) < 0.2 and np.array_equal(noisy[..., 0], noisy[..., 2])


def test_split_labels_exact_count() -> None:
    labels = synth._split_labels(0, "train", 800, 0.2)
    assert labels.shape == (800,) and int((labels == 0).sum()) == 160
    assert np.array_equal(labels, synth._split_labels(0, "train", 800, 0.2))
    assert not np.array_equal(labels, synth._split_labels(0, "test", 800, 0.2))


def test_photos_are_bundled_and_load_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded, missing = synth._load_photos()
    assert missing == {}
    assert sorted(loaded) == sorted(synth._PHOTO_FILES)
    assert np.array_equal(np.asarray(loaded["astronaut"].image), skimage.data.astronaut())
    assert np.array_equal(np.asarray(loaded["camera"].image), skimage.data.camera())
    assert loaded["camera"].gray and not loaded["coffee"].gray
    out = build_splicing_synth(tmp_path, seed=0, size=32, n_train=2, n_val=1, n_test=1)
    assert len(read_split(out, "train")) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 16}, "build_splicing_synth: size must be an int >= 32, got 16"),
        ({"seed": -1}, "build_splicing_synth: seed must be a non-negative int, got -1"),
        ({"n_val": -2}, "build_splicing_synth: n_val must be a non-negative int, got -2"),
        ({"n_train": 1.5}, "build_splicing_synth: n_train must be a non-negative int, got 1.5"),
        ({"authentic_fraction": 1.5}, "build_splicing_synth: authentic_fraction must be in [0, 1], got 1.5"),
    ],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_splicing_synth(tmp_path, **{**PARAMS, **kwargs})
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []


def test_read_split_returns_absolute_paths(built: Path) -> None:
    rows = read_split(built, "val")
    assert len(rows) == 4
    first = rows[0]
    assert set(first) == set(CSV_COLUMNS)
    assert first["image"] == built.resolve() / "val/images/val_00000.png"
    assert first["mask"] == built.resolve() / "val/masks/val_00000.png"
    assert first["image"].is_absolute() and isinstance(first["label"], int)


def test_read_split_errors(built: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'dev'"):
        read_split(built, "dev")
    with pytest.raises(FileNotFoundError, match=r"test\.csv does not exist"):
        read_split(tmp_path, "test")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("id,image,label\n")
    with pytest.raises(ValueError, match=r"train\.csv: header must be id,image,mask,label,host,donor"):
        read_split(tmp_path, "train")
    (tmp_path / "a.png").write_bytes(b"")
    csv_path.write_text("id,image,mask,label,host,donor\nx,a.png,a.png,2,cat,\n")
    with pytest.raises(ValueError, match=r"train\.csv:2: label must be 0 or 1, got '2'"):
        read_split(tmp_path, "train")
    csv_path.write_text("id,image,mask,label,host,donor\nx,a.png,gone.png,1,cat,dog\n")
    with pytest.raises(FileNotFoundError, match=r"train\.csv:2: mask file .*gone\.png is missing"):
        read_split(tmp_path, "train")
    csv_path.write_text("id,image,mask,label,host,donor\nx,a.png\n")
    with pytest.raises(ValueError, match=r"train\.csv:2: expected 6 fields, got 2"):
        read_split(tmp_path, "train")
