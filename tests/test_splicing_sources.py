"""Splicing readers: image/mask decoding, per-dataset name pairing, and the real third-party samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forgery.data.splicing import (
    DATASETS,
    MASK_RULES,
    DataError,
    IndexResult,
    SplicingRecord,
    index_dataset,
    index_dataset_report,
    load_image,
    load_mask,
)
from tests.conftest import REAL_DATA

REAL = REAL_DATA
SPLICING = REAL / "splicing"

W, H = 16, 12


# ------------------------------------------------------------------------------------------------ helpers
def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _photo(path: Path, value: int = 90) -> Path:
    """A small flat RGB 'photo' (16x12)."""
    return _save(Image.new("RGB", (W, H), (value, value // 2, 255 - value)), path)


def _box(box: tuple[int, int, int, int]) -> np.ndarray:
    """Expected (H, W) bool mask with True inside box = (x0, y0, x1, y1)."""
    out = np.zeros((H, W), bool)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = True
    return out


def _grey_mask(path: Path, box: tuple[int, int, int, int], fg: int = 255, bg: int = 0) -> np.ndarray:
    """Write an L-mode mask with ``fg`` inside box, ``bg`` elsewhere; return the box as bool (H, W)."""
    expected = _box(box)
    _save(Image.fromarray(np.where(expected, fg, bg).astype(np.uint8), "L"), path)
    return expected


def _by_id(records: list[SplicingRecord]) -> dict[str, SplicingRecord]:
    return {r.id: r for r in records}


def _check_masks(records: list[SplicingRecord], expected: dict[str, np.ndarray]) -> None:
    for rec in records:
        if rec.label == 0:
            assert rec.mask is None
            continue
        got = load_mask(rec.mask, rec.mask_rule)
        assert got.dtype == bool and got.shape == (H, W)
        np.testing.assert_array_equal(got, expected[rec.id], err_msg=rec.id)


# -------------------------------------------------------------------------------------------- load_image
def test_load_image_rgba_drops_alpha_keeps_colour(tmp_path: Path) -> None:
    arr = np.zeros((H, W, 4), np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2], arr[..., 3] = 200, 100, 50, 0
    arr[0, 0] = (1, 2, 3, 255)
    out = load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[0, 0], [1, 2, 3])
    np.testing.assert_array_equal(out[5, 5], [200, 100, 50])


def test_load_image_grey_and_palette(tmp_path: Path) -> None:
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    out = load_image(_save(Image.fromarray(grey, "L"), tmp_path / "g.png"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))

    pal = Image.new("P", (W, H), 0)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((3, 4), 1)
    out = load_image(_save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(out[4, 3], [10, 200, 30])
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])


def test_load_image_16bit_scales_not_clips(tmp_path: Path) -> None:
    raw = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
    path = _save(Image.fromarray(raw), tmp_path / "d.png")
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    # round(v * 255 / 65535): 1000 -> 3.89 -> 4
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 4, 128, 255]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_load_image_cmyk(tmp_path: Path) -> None:
    img = Image.new("CMYK", (3, 1))
    for x, px in enumerate([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)]):
        img.putpixel((x, 0), px)
    out = load_image(_save(img, tmp_path / "c.tif"))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [0, 255, 255], [0, 0, 0]])


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, : W // 2] = (255, 0, 0)  # left half red
    arr[:, W // 2 :] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_save(Image.fromarray(arr), tmp_path / "r.jpg", exif=exif, quality=100))
    assert out.shape == (W, H, 3)
    # the left (red) half becomes the top half after a clockwise quarter turn
    assert (out[: W // 2 - 2, :, 0] > 200).all() and (out[: W // 2 - 2, :, 2] < 60).all()
    assert (out[W // 2 + 2 :, :, 2] > 200).all() and (out[W // 2 + 2 :, :, 0] < 60).all()


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png: file is empty \(0 bytes\)$"):
        load_image(empty)

    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    full = _save(Image.fromarray(noise), tmp_path / "full.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError) as info:
        load_image(cut)
    assert str(info.value).startswith(f"{cut}: corrupt or truncated image data")

    text = tmp_path / "notes.jpg"
    text.write_text("this is not a JPEG\n")
    with pytest.raises(DataError) as info:
        load_image(text)
    assert str(info.value) == f"{text}: not a recognised image file (PIL cannot identify the format)"

    missing = tmp_path / "nope.png"
    with pytest.raises(DataError) as info:
        load_image(missing)
    assert str(info.value) == f"{missing}: file does not exist"
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------------------------- load_mask
def test_load_mask_rules_and_modes(tmp_path: Path) -> None:
    box = (4, 2, 10, 8)
    expected = _box(box)
    grey = np.where(expected, 255, 0).astype(np.uint8)
    paths = {
        "L": _save(Image.fromarray(grey, "L"), tmp_path / "l.png"),
        "RGB": _save(Image.fromarray(np.stack([grey] * 3, -1)), tmp_path / "rgb.png"),
        "1": _save(Image.fromarray(expected), tmp_path / "bit.png"),
        "01": _save(Image.fromarray(expected.astype(np.uint8)), tmp_path / "zero_one.png"),
        "16": _save(Image.fromarray(expected.astype(np.uint16) * 65535), tmp_path / "sixteen.png"),
    }
    assert Image.open(paths["1"]).mode == "1"
    for name, path in paths.items():
        np.testing.assert_array_equal(load_mask(path, "lum127"), expected, err_msg=name)
        np.testing.assert_array_equal(load_mask(path, "lum127_inv"), ~expected, err_msg=name)
    assert set(MASK_RULES) == {"lum127", "lum127_inv", "columbia_green"}
    with pytest.raises(ValueError, match=r"unknown mask rule 'bogus'; valid rules: \['columbia_green', "):
        load_mask(paths["L"], "bogus")
    bad = tmp_path / "bad_gt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"bad_gt\.png: "):
        load_mask(bad, "lum127")


# ------------------------------------------------------------------------------------------------ casia1
def _casia1_tree(root: Path) -> dict[str, np.ndarray]:
    tp, gt = root / "CASIA1/Modified Tp/Tp", root / "CASIA 1.0 groundtruth"
    _photo(tp / "Sp/Sp_D_b.jpg")
    _photo(tp / "Sp/Sp_D_a.jpg")
    _photo(tp / "CM/Sp_S_c.jpg")
    _photo(root / "CASIA1/Au/Au_ani_0001.jpg")
    _photo(root / "CASIA1/Au/notes.jpg")  # not Au_* -> unused, reported
    # decoy that sorts first: pairing masks by sorted order would give Sp_D_a the wrong mask
    _grey_mask(gt / "Sp/Sp_D_0_gt.png", (0, 0, 16, 12))
    return {
        "CASIA1/Modified Tp/Tp/Sp/Sp_D_a.jpg": _grey_mask(gt / "Sp/Sp_D_a_gt.png", (1, 1, 5, 5)),
        "CASIA1/Modified Tp/Tp/Sp/Sp_D_b.jpg": _grey_mask(gt / "Sp/Sp_D_b_gt.png", (6, 2, 14, 10)),
        "CASIA1/Modified Tp/Tp/CM/Sp_S_c.jpg": _grey_mask(gt / "CM/Sp_S_c_gt.png", (0, 6, 8, 12)),
    }


def test_casia1_pairs_by_name(tmp_path: Path) -> None:
    expected = _casia1_tree(tmp_path)
    result = index_dataset_report("casia1", tmp_path)
    assert isinstance(result, IndexResult)
    assert [(r.id, r.label) for r in result.records] == [
        ("CASIA1/Au/Au_ani_0001.jpg", 0),
        ("CASIA1/Modified Tp/Tp/Sp/Sp_D_a.jpg", 1),
        ("CASIA1/Modified Tp/Tp/Sp/Sp_D_b.jpg", 1),
    ]
    recs = _by_id(result.records)
    assert (
        recs["CASIA1/Modified Tp/Tp/Sp/Sp_D_a.jpg"].mask
        == tmp_path / "CASIA 1.0 groundtruth/Sp/Sp_D_a_gt.png"
    )
    assert recs["CASIA1/Au/Au_ani_0001.jpg"].image == tmp_path / "CASIA1/Au/Au_ani_0001.jpg"
    assert {r.mask_rule for r in result.records} == {"lum127"}
    _check_masks(result.records, expected)
    assert result.skipped["unused_files"] == [
        "CASIA 1.0 groundtruth/CM/Sp_S_c_gt.png",
        "CASIA 1.0 groundtruth/Sp/Sp_D_0_gt.png",
        "CASIA1/Au/notes.jpg",
        "CASIA1/Modified Tp/Tp/CM/Sp_S_c.jpg",
    ]
    assert result.skipped["missing_mask"] == []

    both = index_dataset("casia1", tmp_path, subsets=("Sp", "CM"), include_authentic=False)
    assert [r.id for r in both] == sorted(expected)
    _check_masks(both, expected)
    assert DATASETS["casia1"](tmp_path) == result.records


def test_casia1_missing_mask_raises_or_is_reported(tmp_path: Path) -> None:
    _casia1_tree(tmp_path)
    (tmp_path / "CASIA 1.0 groundtruth/Sp/Sp_D_b_gt.png").unlink()
    with pytest.raises(DataError) as info:
        index_dataset("casia1", tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: 1 tampered casia1 image(s) have no mask, e.g. "
        "['CASIA1/Modified Tp/Tp/Sp/Sp_D_b.jpg']; pass missing_mask='skip' to leave them out "
        "(they are then reported)"
    )
    result = index_dataset_report("casia1", tmp_path, missing_mask="skip")
    assert [r.id for r in result.records] == [
        "CASIA1/Au/Au_ani_0001.jpg",
        "CASIA1/Modified Tp/Tp/Sp/Sp_D_a.jpg",
    ]
    assert result.skipped["missing_mask"] == ["CASIA1/Modified Tp/Tp/Sp/Sp_D_b.jpg"]
    with pytest.raises(ValueError, match=r"missing_mask must be one of \('error', 'skip'\), got 'drop'"):
        index_dataset("casia1", tmp_path, missing_mask="drop")


# ------------------------------------------------------------------------------------------------ casia2
def test_casia2_mask_modes_and_decoy_folder(tmp_path: Path) -> None:
    gt = tmp_path / "CASIA 2 Groundtruth"
    for stem, ext in [("Tp_D_1", "tif"), ("Tp_D_2", "jpg"), ("Tp_S_3", "bmp"), ("Tp_S_4", "tif")]:
        _photo(tmp_path / f"CASIA2/Tp/{stem}.{ext}")
    _photo(tmp_path / "CASIA2/Au/Au_ani_00001.jpg")
    expected = {}

    # RGBA: opaque white box; the rest is white but fully transparent -> flattened onto black = pristine
    box1 = _box((2, 2, 8, 6))
    rgba = np.full((H, W, 4), 255, np.uint8)
    rgba[..., 3] = np.where(box1, 255, 0)
    _save(Image.fromarray(rgba, "RGBA"), gt / "Tp_D_1_gt.png")
    expected["CASIA2/Tp/Tp_D_1.tif"] = box1

    # P: palette index 1 = white
    box2 = _box((8, 0, 16, 4))
    pal = Image.fromarray(box2.astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    _save(pal, gt / "Tp_D_2_gt.png")
    expected["CASIA2/Tp/Tp_D_2.jpg"] = box2

    # RGB with an anti-aliased edge: 128 counts as tampered, 127 does not
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[4:8, 4:8] = 255
    rgb[4:8, 8] = 128
    rgb[4:8, 3] = 127
    _save(Image.fromarray(rgb), gt / "Tp_S_3_gt.png")
    expected["CASIA2/Tp/Tp_S_3.bmp"] = _box((4, 4, 9, 8))

    # 0/1 mask
    expected["CASIA2/Tp/Tp_S_4.tif"] = _grey_mask(gt / "Tp_S_4_gt.png", (0, 8, 5, 12), fg=1)

    # BusterNet 3-class folder: named like the images, must never be taken as ground truth
    for stem in ["Tp_D_1", "Tp_S_3"]:
        _save(Image.new("RGB", (W, H), (0, 0, 255)), tmp_path / f"masks_busternet_cmfd_3class/{stem}.png")

    result = index_dataset_report("casia2", tmp_path)
    assert [r.id for r in result.records] == ["CASIA2/Au/Au_ani_00001.jpg", *sorted(expected)]
    recs = _by_id(result.records)
    assert recs["CASIA2/Tp/Tp_S_3.bmp"].mask == gt / "Tp_S_3_gt.png"
    assert [r.label for r in result.records] == [0, 1, 1, 1, 1]
    _check_masks(result.records, expected)
    assert result.skipped["unused_files"] == [
        "masks_busternet_cmfd_3class/Tp_D_1.png",
        "masks_busternet_cmfd_3class/Tp_S_3.png",
    ]
    assert [r.id for r in index_dataset("casia2", tmp_path, include_authentic=False)] == sorted(expected)


# ---------------------------------------------------------------------------------------------- columbia
def _edgemask(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    """Red background, green tampered box, saved as a high-quality JPEG like Columbia's edgemasks."""
    expected = _box(box)
    arr = np.zeros((H, W, 3), np.uint8)
    arr[..., 0] = np.where(expected, 0, 255)
    arr[..., 1] = np.where(expected, 255, 0)
    _save(Image.fromarray(arr), path, quality=100, subsampling=0)
    return expected


def test_columbia_green_rule(tmp_path: Path) -> None:
    _photo(tmp_path / "4cam_splc/canong3_nikond70_sub_02.tif")
    _photo(tmp_path / "4cam_splc/canong3_canonxt_sub_01.tif")
    _photo(tmp_path / "4cam_auth/canong3_02_sub_01.tif")
    expected = {
        "4cam_splc/canong3_canonxt_sub_01.tif": _edgemask(
            tmp_path / "4cam_splc/edgemask/canong3_canonxt_sub_01_edgemask.jpg", (0, 0, 8, 6)
        ),
        "4cam_splc/canong3_nikond70_sub_02.tif": _edgemask(
            tmp_path / "4cam_splc/edgemask/canong3_nikond70_sub_02_edgemask.jpg", (8, 6, 16, 12)
        ),
    }
    _edgemask(tmp_path / "4cam_splc/edgemask/canong3_aaa_edgemask.jpg", (0, 0, 16, 12))  # orphan decoy
    records = index_dataset("columbia", tmp_path)
    assert [(r.id, r.label, r.mask_rule) for r in records] == [
        ("4cam_auth/canong3_02_sub_01.tif", 0, "columbia_green"),
        ("4cam_splc/canong3_canonxt_sub_01.tif", 1, "columbia_green"),
        ("4cam_splc/canong3_nikond70_sub_02.tif", 1, "columbia_green"),
    ]
    assert records[2].mask == tmp_path / "4cam_splc/edgemask/canong3_nikond70_sub_02_edgemask.jpg"
    _check_masks(records, expected)


# ---------------------------------------------------------------------------------------------- coverage
def test_coverage_forged_masks_only(tmp_path: Path) -> None:
    for stem in ["1", "1t", "2t", "10t"]:
        _photo(tmp_path / f"image/{stem}.tif")
    expected = {}
    for n, box in [("1", (0, 0, 4, 4)), ("2", (4, 4, 8, 8)), ("10", (8, 8, 16, 12))]:
        expected[f"image/{n}t.tif"] = _grey_mask(tmp_path / f"mask/{n}forged.tif", box)
        _grey_mask(tmp_path / f"mask/{n}copy.tif", (12, 0, 16, 4))  # decoys: source / target regions
        _grey_mask(tmp_path / f"mask/{n}paste.tif", (12, 0, 16, 4))
    records = index_dataset("coverage", tmp_path)
    assert [(r.id, r.label) for r in records] == [
        ("image/1.tif", 0),
        ("image/10t.tif", 1),
        ("image/1t.tif", 1),
        ("image/2t.tif", 1),
    ]
    assert _by_id(records)["image/2t.tif"].mask == tmp_path / "mask/2forged.tif"
    _check_masks(records, expected)


# ------------------------------------------------------------------------------------------------ nist16
def _nist_tree(root: Path) -> np.ndarray:
    _photo(root / "probe/NC2016_0002.jpg")
    _photo(root / "probe/NC2016_0001.jpg")
    # official convention: black = manipulated on white
    expected = _grey_mask(root / "reference/manipulation/mask/NC2016_9999.png", (3, 3, 9, 7), fg=0, bg=255)
    _grey_mask(root / "reference/manipulation/mask/NC2016_0001.png", (0, 0, 16, 12), fg=0, bg=255)  # decoy
    return expected


def test_nist16_official_reference(tmp_path: Path) -> None:
    expected = _nist_tree(tmp_path)
    ref = tmp_path / "reference/manipulation/NC2016-manipulation-ref.csv"
    ref.write_text(
        "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|DonorFileName|IsTarget\n"
        "manipulation|a|probe/NC2016_0002.jpg|reference/manipulation/mask/NC2016_9999.png|d1.jpg|Y\n"
        "manipulation|a|probe/NC2016_0002.jpg|reference/manipulation/mask/NC2016_9999.png|d2.jpg|Y\n"
        "manipulation|b|probe/NC2016_0001.jpg||d3.jpg|N\n"
    )
    records = index_dataset("nist16", tmp_path, index="reference/manipulation/NC2016-manipulation-ref.csv")
    assert records == [
        SplicingRecord("probe/NC2016_0001.jpg", tmp_path / "probe/NC2016_0001.jpg", None, 0, "lum127_inv"),
        SplicingRecord(
            "probe/NC2016_0002.jpg",
            tmp_path / "probe/NC2016_0002.jpg",
            tmp_path / "reference/manipulation/mask/NC2016_9999.png",
            1,
            "lum127_inv",
        ),
    ]
    _check_masks(records, {"probe/NC2016_0002.jpg": expected})

    ref.write_text(ref.read_text() + "manipulation|c|probe/NC2016_0001.jpg||d4.jpg|Y\n")
    with pytest.raises(
        DataError, match=r"1 target image\(s\) have no mask, e.g. \['probe/NC2016_0001.jpg'\]"
    ):
        index_dataset("nist16", tmp_path, index=ref)


def test_nist16_simple_csv_and_errors(tmp_path: Path) -> None:
    expected = _nist_tree(tmp_path)
    index = tmp_path / "pairs.csv"
    index.write_text(
        "image,mask\nprobe/NC2016_0002.jpg,reference/manipulation/mask/NC2016_9999.png\nprobe/NC2016_0001.jpg,\n"
    )
    records = index_dataset("nist16", tmp_path, index=index, include_authentic=False)
    assert [(r.id, r.label) for r in records] == [("probe/NC2016_0002.jpg", 1)]
    _check_masks(records, {"probe/NC2016_0002.jpg": expected})
    lum = index_dataset("nist16", tmp_path, index=index, mask_rule="lum127")
    np.testing.assert_array_equal(load_mask(lum[1].mask, lum[1].mask_rule), ~expected)

    with pytest.raises(DataError, match=r"dataset 'nist16' requires an index file \(pass index=\.\.\.\)"):
        index_dataset("nist16", tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("probe,ref\na.jpg,b.png\n")
    with pytest.raises(DataError) as info:
        index_dataset("nist16", tmp_path, index=bad)
    assert str(info.value) == (
        f"{bad}: header must contain 'ProbeFileName|ProbeMaskFileName' (NIST reference) or "
        "'image,mask' (CSV); got ['probe', 'ref']"
    )


# ----------------------------------------------------------------------------------------------- imd2020
def test_imd2020_pairs_within_folder(tmp_path: Path) -> None:
    _photo(tmp_path / "IMD2020/1a1ogs/1a1ogs_orig.jpg")
    _photo(tmp_path / "IMD2020/1a1ogs/1a1ogs_0.jpg")
    _photo(tmp_path / "IMD2020/1a1ogs/1a1ogs_1.png")
    _photo(tmp_path / "IMD2020/c8tt7fg/c8tt7fg_orig.png")
    _photo(tmp_path / "IMD2020/c8tt7fg/c8tt7fg_0.jpg")
    expected = {
        "IMD2020/1a1ogs/1a1ogs_0.jpg": _grey_mask(
            tmp_path / "IMD2020/1a1ogs/1a1ogs_0_mask.png", (0, 0, 3, 3)
        ),
        "IMD2020/1a1ogs/1a1ogs_1.png": _grey_mask(
            tmp_path / "IMD2020/1a1ogs/1a1ogs_1_mask.png", (3, 3, 9, 9)
        ),
        "IMD2020/c8tt7fg/c8tt7fg_0.jpg": _grey_mask(
            tmp_path / "IMD2020/c8tt7fg/c8tt7fg_0_mask.png", (10, 1, 15, 11), fg=1
        ),
    }
    _grey_mask(tmp_path / "IMD2020/c8tt7fg/1a1ogs_0_mask.png", (0, 0, 16, 12))  # wrong folder: decoy
    result = index_dataset_report("imd2020", tmp_path)
    assert [(r.id, r.label) for r in result.records] == [
        ("IMD2020/1a1ogs/1a1ogs_0.jpg", 1),
        ("IMD2020/1a1ogs/1a1ogs_1.png", 1),
        ("IMD2020/1a1ogs/1a1ogs_orig.jpg", 0),
        ("IMD2020/c8tt7fg/c8tt7fg_0.jpg", 1),
        ("IMD2020/c8tt7fg/c8tt7fg_orig.png", 0),
    ]
    assert _by_id(result.records)["IMD2020/1a1ogs/1a1ogs_0.jpg"].mask == (
        tmp_path / "IMD2020/1a1ogs/1a1ogs_0_mask.png"
    )
    _check_masks(result.records, expected)
    assert result.skipped["unused_files"] == ["IMD2020/c8tt7fg/1a1ogs_0_mask.png"]


# -------------------------------------------------------------------------------------------------- dso1
def test_dso1_inverted_masks(tmp_path: Path) -> None:
    for name in ["splicing-02", "splicing-01", "normal-01"]:
        _photo(tmp_path / f"tifs-database/DSO-1/{name}.png")
    masks = tmp_path / "tifs-database/DSO-1-Fake-Images-Masks"
    _grey_mask(masks / "splicing-00.png", (0, 0, 16, 12), fg=0, bg=255)  # orphan sorting first
    expected = {
        "tifs-database/DSO-1/splicing-01.png": _grey_mask(
            masks / "splicing-01.png", (2, 2, 6, 10), fg=0, bg=255
        ),
        "tifs-database/DSO-1/splicing-02.png": _grey_mask(
            masks / "splicing-02.png", (9, 1, 15, 4), fg=0, bg=255
        ),
    }
    records = index_dataset("dso1", tmp_path)
    assert [(r.id, r.label, r.mask_rule) for r in records] == [
        ("tifs-database/DSO-1/normal-01.png", 0, "lum127_inv"),
        ("tifs-database/DSO-1/splicing-01.png", 1, "lum127_inv"),
        ("tifs-database/DSO-1/splicing-02.png", 1, "lum127_inv"),
    ]
    assert records[1].mask == masks / "splicing-01.png"
    _check_masks(records, expected)


# ------------------------------------------------------------------------------------------------ folder
def test_folder_mask_suffixes_and_subfolders(tmp_path: Path) -> None:
    for rel in ["Tp/b.png", "Tp/a.jpg", "Tp/sub/c.jpg", "Au/z.jpg"]:
        _photo(tmp_path / rel)
    expected = {
        "Tp/a.jpg": _grey_mask(tmp_path / "Gt/a_mask.png", (0, 0, 4, 12)),
        "Tp/b.png": _grey_mask(tmp_path / "Gt/b_gt.bmp", (4, 0, 8, 12)),
        "Tp/sub/c.jpg": _grey_mask(tmp_path / "Gt/sub/c.png", (8, 0, 12, 12)),
    }
    _grey_mask(tmp_path / "Gt/c.png", (12, 0, 16, 12))  # same stem, other folder: decoy
    result = index_dataset_report("folder", tmp_path)
    assert [(r.id, r.label) for r in result.records] == [
        ("Au/z.jpg", 0),
        ("Tp/a.jpg", 1),
        ("Tp/b.png", 1),
        ("Tp/sub/c.jpg", 1),
    ]
    assert _by_id(result.records)["Tp/sub/c.jpg"].mask == tmp_path / "Gt/sub/c.png"
    _check_masks(result.records, expected)
    assert result.skipped["unused_files"] == ["Gt/c.png"]

    _grey_mask(tmp_path / "Gt/a.png", (0, 0, 1, 1))
    with pytest.raises(DataError) as info:
        index_dataset("folder", tmp_path)
    assert str(info.value) == f"{tmp_path}: ambiguous masks for Tp/a.jpg: Gt/a.png, Gt/a_mask.png"


def test_folder_custom_names(tmp_path: Path) -> None:
    _photo(tmp_path / "data/fake/x.png")
    _photo(tmp_path / "data/real/y.png")
    expected = {"data/fake/x.png": _grey_mask(tmp_path / "data/masks/x.png", (5, 5, 7, 7))}
    records = index_dataset(
        "folder", tmp_path, tampered_dir="data/fake", mask_dir="data/masks", authentic_dir="data/real"
    )
    assert [(r.id, r.label) for r in records] == [("data/fake/x.png", 1), ("data/real/y.png", 0)]
    _check_masks(records, expected)
    only_tp = index_dataset(
        "folder", tmp_path, tampered_dir="data/fake", mask_dir="data/masks", authentic_dir=None
    )
    assert [r.id for r in only_tp] == ["data/fake/x.png"]


# -------------------------------------------------------------------------------------------------- list
def test_list_csv_and_json(tmp_path: Path) -> None:
    _photo(tmp_path / "imgs/b.jpg")
    _photo(tmp_path / "imgs/a.jpg")
    expected = {"imgs/b.jpg": _grey_mask(tmp_path / "gts/whatever_17.png", (1, 2, 3, 4))}
    (tmp_path / "split.csv").write_text("image,mask\nimgs/b.jpg,gts/whatever_17.png\nimgs/a.jpg,\n")
    (tmp_path / "split.json").write_text(
        json.dumps([{"image": "imgs/b.jpg", "mask": "gts/whatever_17.png"}, ["imgs/a.jpg", None]])
    )
    want = [
        SplicingRecord("imgs/a.jpg", tmp_path / "imgs/a.jpg", None, 0, "lum127"),
        SplicingRecord("imgs/b.jpg", tmp_path / "imgs/b.jpg", tmp_path / "gts/whatever_17.png", 1, "lum127"),
    ]
    for index in ["split.csv", "split.json"]:
        assert index_dataset("list", tmp_path, index=index) == want
        assert index_dataset("list", None, index=tmp_path / index) == want  # relative to the index folder
    _check_masks(want, expected)

    (tmp_path / "gone.json").write_text(json.dumps([["imgs/a.jpg", "gts/missing.png"]]))
    with pytest.raises(DataError) as info:
        index_dataset("list", tmp_path, index="gone.json")
    assert str(info.value) == (
        f"{tmp_path / 'gone.json'}: 1 listed file(s) do not exist, e.g. ['{tmp_path / 'gts/missing.png'}']"
    )
    (tmp_path / "odd.json").write_text(json.dumps([{"img": "imgs/a.jpg"}]))
    with pytest.raises(DataError, match=r"odd\.json: entry 0 must be"):
        index_dataset("list", tmp_path, index="odd.json")


# ------------------------------------------------------------------------------------------------ errors
def test_registry_and_root_errors(tmp_path: Path) -> None:
    assert sorted(DATASETS) == [
        "casia1",
        "casia2",
        "columbia",
        "coverage",
        "dso1",
        "folder",
        "imd2020",
        "list",
        "nist16",
    ]
    with pytest.raises(ValueError) as info:
        index_dataset("casia3", tmp_path)
    assert str(info.value) == (
        "unknown dataset 'casia3'; valid names: "
        "['casia1', 'casia2', 'columbia', 'coverage', 'dso1', 'folder', 'imd2020', 'list', 'nist16']"
    )
    with pytest.raises(TypeError, match=r"casia2: unknown option\(s\) \['subsets'\]"):
        index_dataset("casia2", tmp_path, subsets=("Sp",))
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        index_dataset("coverage", missing)
    assert str(info.value) == f"{missing}: dataset root does not exist or is not a directory"
    _photo(tmp_path / "random/x.jpg")
    with pytest.raises(DataError) as info:
        index_dataset("casia2", tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no casia2 records found; "
        "looked for **/Tp/**/<stem>.<ext>, <stem>_gt.<ext> anywhere, **/Au/**"
    )


def test_walk_reports_hidden_and_survives_symlink_loop(tmp_path: Path) -> None:
    _photo(tmp_path / "Tp/a.jpg")
    _grey_mask(tmp_path / "Gt/a.png", (0, 0, 2, 2))
    _photo(tmp_path / "Tp/._a.jpg")  # AppleDouble junk
    _photo(tmp_path / "__MACOSX/Tp/a.jpg")
    (tmp_path / "Tp/loop").symlink_to(tmp_path / "Tp", target_is_directory=True)
    result = index_dataset_report("folder", tmp_path)
    assert [r.id for r in result.records] == ["Tp/a.jpg"]
    assert result.skipped["hidden"] == ["Tp/._a.jpg", "__MACOSX/"]
    assert result.skipped["symlink_loops"] == ["Tp/loop/"]


# ---------------------------------------------------------------------------------------- real samples
def _real(sub: str) -> Path:
    path = SPLICING / sub
    if not path.is_dir():
        pytest.skip(f"real sample {path} absent")
    return path


def test_real_casia1() -> None:
    root = _real("casia1_dev")
    n_au = len(list((root / "CASIA1/Au").glob("Au_*.jpg")))
    assert n_au > 0
    records = index_dataset("casia1", root)
    tampered = [r for r in records if r.label == 1]
    assert len(tampered) == 40 and len(records) == 40 + n_au
    assert all(r.mask is not None and r.mask.name == Path(r.id).stem + "_gt.png" for r in tampered)
    assert all("/Sp/" in r.id and "/Sp/" in r.mask.as_posix() for r in tampered)
    with_cm = index_dataset("casia1", root, subsets=("Sp", "CM"), include_authentic=False)
    assert len(with_cm) == 50 and all(r.label == 1 for r in with_cm)
    first = tampered[0]
    mask = load_mask(first.mask, first.mask_rule)
    assert mask.shape == load_image(first.image).shape[:2] and 0 < mask.mean() < 0.5


def test_real_casia2_masks_match_images() -> None:
    root = _real("casia2")
    result = index_dataset_report("casia2", root)
    assert len(result.records) == 17 and all(r.label == 1 for r in result.records)
    assert all(r.mask.parent.name == "CASIA 2 Groundtruth" for r in result.records)
    assert all(p.startswith("masks_busternet_cmfd_3class/") for p in result.skipped["unused_files"])
    for rec in result.records:
        mask = load_mask(rec.mask, rec.mask_rule)
        with Image.open(rec.image) as img:
            assert mask.shape == (img.height, img.width), rec.id
        assert 0 < mask.mean() < 1, rec.id


def test_real_nist16_via_csv(tmp_path: Path) -> None:
    root = _real("nist16_sample")
    index = tmp_path / "nist.csv"
    index.write_text("image,mask\nimgs/NC2016_2564.jpg,refs/NC2016_2564_gt.png\n")
    (rec,) = index_dataset("nist16", root, index=index, mask_rule="lum127")
    assert (rec.id, rec.label, rec.mask_rule) == ("imgs/NC2016_2564.jpg", 1, "lum127")
    mask = load_mask(rec.mask, rec.mask_rule)
    with Image.open(rec.image) as img:
        assert mask.shape == (img.height, img.width)
    assert 0 < mask.mean() < 0.5
