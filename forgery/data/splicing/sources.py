"""Indexers for splicing-localisation datasets in their own on-disk layouts.

Every layout-based indexer walks the dataset root ONCE (``os.walk`` following directory symlinks, with loop
protection), builds name -> path maps and pairs each image with its mask BY NAME under the dataset's naming
rule; nothing is ever paired by sorted order. Index-file datasets (``nist16``, ``list``) read their index
file instead.

Two entry points:

* ``index_dataset(name, root, **options) -> list[SplicingRecord]`` (also ``DATASETS[name](root, **options)``):
  the records, sorted by id.
* ``index_dataset_report(name, root, **options) -> IndexResult``: the same records plus ``skipped``, a dict
  reason -> sorted relative paths of everything that was left out, so that no drop is silent:

  - ``missing_mask``: tampered images without a mask (only with ``missing_mask="skip"``; the default
    ``"error"`` raises DataError instead),
  - ``authentic_excluded``: authentic images left out by ``include_authentic=False``,
  - ``unused_files``: image-extension files under the root that are neither a record's image nor its mask
    (decoys, masks of other subsets, unrelated mask folders),
  - ``hidden``: hidden entries and ``__MACOSX`` folders not walked, ``symlink_loops``: directories reached
    twice through symlinks and not walked again, ``unreadable_dirs``: directories os.walk could not list.

  ``index_dataset`` logs a warning for ``missing_mask`` skips and an info line for the other reasons.

Options common to every indexer: ``include_authentic: bool = True`` (authentic images become negatives: mask
None, label 0), ``mask_rule`` (a key of MASK_RULES; each dataset has its own default) and, where a layout
requires masks, ``missing_mask: "error" | "skip" = "error"``.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from forgery.data.splicing.io import MASK_RULES, DataError
from forgery.errors import ConfigError

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "IndexResult",
    "SplicingRecord",
    "index_dataset",
    "index_dataset_report",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
_MISSING_MASK_MODES = ("error", "skip")
_SHOW = 5  # how many offending names an error message lists


@dataclass(frozen=True)
class SplicingRecord:
    """One image of a splicing dataset.

    ``id`` is the image path relative to the dataset root (posix), unique within an index; ``mask`` None means
    an authentic image whose mask is all zeros.
    """

    id: str
    image: Path
    mask: Path | None
    label: int
    mask_rule: str


@dataclass(frozen=True)
class IndexResult:
    """Records sorted by id plus ``skipped``: reason -> sorted relative paths left out (see module doc)."""

    records: list[SplicingRecord]
    skipped: dict[str, list[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- walking
@dataclass
class _Tree:
    root: Path
    files: list[PurePosixPath]  # relative to root, hidden entries excluded
    skipped: dict[str, list[str]]

    def images(self) -> list[PurePosixPath]:
        return [p for p in self.files if p.suffix.lower() in IMAGE_EXTENSIONS]


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk(root: Path) -> _Tree:
    """List every file under ``root`` once, following directory symlinks but never a directory twice."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist or is not a directory")
    seen: set[tuple[int, int]] = set()
    files: list[PurePosixPath] = []
    hidden: list[str] = []
    loops: list[str] = []
    unreadable: list[str] = []

    def on_error(exc: OSError) -> None:
        unreadable.append(f"{exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            loops.append(f"{rel_dir}/")
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        hidden += [f"{rel_dir / d}/" for d in dirnames if _is_hidden(d)]
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if _is_hidden(name):
                hidden.append(str(rel_dir / name))
            else:
                files.append(rel_dir / name)
    skipped = {
        "hidden": sorted(hidden),
        "symlink_loops": sorted(loops),
        "unreadable_dirs": sorted(unreadable),
    }
    return _Tree(root, files, skipped)


def _group(paths: Iterable[PurePosixPath], keys: Callable[[PurePosixPath], Iterable]) -> dict:
    """Map every key produced by ``keys(path)`` to the list of paths producing it."""
    out: dict = {}
    for p in paths:
        for k in keys(p):
            out.setdefault(k, []).append(p)
    return out


def _pick(groups: dict, key: object, image: PurePosixPath, root: Path) -> PurePosixPath | None:
    """The single mask registered under ``key``; several is an ambiguity the user must resolve."""
    found = groups.get(key, [])
    if len(found) > 1:
        raise DataError(f"{root}: ambiguous masks for {image}: {', '.join(map(str, found))}")
    return found[0] if found else None


# ---------------------------------------------------------------------------------------------- assembly
def _check_common(include_authentic: bool, missing_mask: str, mask_rule: str) -> None:
    if not isinstance(include_authentic, bool):
        raise ConfigError(f"include_authentic must be a bool, got {include_authentic!r}")
    if missing_mask not in _MISSING_MASK_MODES:
        raise ConfigError(f"missing_mask must be one of {_MISSING_MASK_MODES}, got {missing_mask!r}")
    if mask_rule not in MASK_RULES:
        raise ConfigError(f"unknown mask rule {mask_rule!r}; valid rules: {sorted(MASK_RULES)}")


def _finish(
    name: str,
    tree: _Tree,
    tampered: Sequence[tuple[PurePosixPath, PurePosixPath | None]],
    authentic: Sequence[PurePosixPath],
    *,
    mask_rule: str,
    include_authentic: bool,
    missing_mask: str,
    looked_for: str,
) -> IndexResult:
    """Turn (image, mask) pairs of a walked tree into an IndexResult, enforcing ``missing_mask``."""
    root = tree.root
    missing = sorted(str(img) for img, mask in tampered if mask is None)
    if missing and missing_mask == "error":
        raise DataError(
            f"{root}: {len(missing)} tampered {name} image(s) have no mask, e.g. {missing[:_SHOW]}; "
            f"pass missing_mask='skip' to leave them out (they are then reported)"
        )
    records = [
        SplicingRecord(img.as_posix(), root / img, root / mask, 1, mask_rule)
        for img, mask in tampered
        if mask is not None
    ]
    if include_authentic:
        records += [SplicingRecord(img.as_posix(), root / img, None, 0, mask_rule) for img in authentic]
    if not records:
        raise DataError(f"{root}: no {name} records found; looked for {looked_for}")
    used = {img for img, _ in tampered} | {m for _, m in tampered if m is not None} | set(authentic)
    skipped = dict(tree.skipped)
    skipped["missing_mask"] = missing
    skipped["authentic_excluded"] = [] if include_authentic else sorted(map(str, authentic))
    skipped["unused_files"] = sorted(str(p) for p in tree.images() if p not in used)
    return IndexResult(_sorted_unique(records, root), skipped)


def _sorted_unique(records: list[SplicingRecord], where: object) -> list[SplicingRecord]:
    records = sorted(records, key=lambda r: r.id)
    dups = sorted({a.id for a, b in zip(records, records[1:]) if a.id == b.id})
    if dups:
        raise DataError(f"{where}: duplicate record ids {dups[:_SHOW]}")
    return records


def _is_under(path: PurePosixPath, folder: str) -> bool:
    return folder in path.parts[:-1]


def _strip(stem: str, suffix: str) -> str | None:
    return stem[: -len(suffix)] if stem.endswith(suffix) and len(stem) > len(suffix) else None


# ---------------------------------------------------------------------------------------------- layouts
def _casia1(
    root: str | Path,
    *,
    subsets: Sequence[str] = ("Sp",),
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127",
) -> IndexResult:
    """CASIA v1.0: ``**/{Sp,CM}/<name>.jpg`` + ``<name>_gt.png`` anywhere under root; ``**/Au/Au_*.jpg``."""
    _check_common(include_authentic, missing_mask, mask_rule)
    subsets = (subsets,) if isinstance(subsets, str) else tuple(subsets)
    if not subsets or not set(subsets) <= {"Sp", "CM"}:
        raise ConfigError(f"casia1 subsets must be a non-empty subset of ('Sp', 'CM'), got {subsets!r}")
    tree = _walk(Path(root))
    images = tree.images()
    masks = _group(images, lambda p: [k] if (k := _strip(p.stem, "_gt")) else [])
    tampered = [
        (p, _pick(masks, p.stem, p, tree.root))
        for p in images
        if p.parent.name in subsets and not p.stem.endswith("_gt")
    ]
    authentic = [p for p in images if p.parent.name == "Au" and p.name.startswith("Au_")]
    return _finish(
        "casia1",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for=f"**/{{{','.join(subsets)}}}/<name>.jpg, <name>_gt.png, **/Au/Au_*",
    )


def _casia2(
    root: str | Path,
    *,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127",
) -> IndexResult:
    """CASIA v2.0: images under a ``Tp/`` folder + ``<stem>_gt.<ext>`` anywhere under root; ``Au/`` authentic.

    Only ``*_gt`` files are masks, so other mask folders (e.g. BusterNet's 3-class copy-move masks named
    ``<stem>.png``) are never mistaken for ground truth; they end up in ``skipped["unused_files"]``.
    """
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()
    masks = _group(images, lambda p: [k] if (k := _strip(p.stem, "_gt")) else [])
    tampered = [
        (p, _pick(masks, p.stem, p, tree.root))
        for p in images
        if _is_under(p, "Tp") and not p.stem.endswith("_gt")
    ]
    authentic = [p for p in images if _is_under(p, "Au") and not p.stem.endswith("_gt")]
    return _finish(
        "casia2",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for="**/Tp/**/<stem>.<ext>, <stem>_gt.<ext> anywhere, **/Au/**",
    )


def _columbia(
    root: str | Path,
    *,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "columbia_green",
) -> IndexResult:
    """Columbia Uncompressed: ``4cam_splc/<stem>.tif`` + ``4cam_splc/edgemask/<stem>_edgemask.jpg``;
    ``4cam_auth/<stem>.tif`` authentic."""
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()

    def mask_keys(p: PurePosixPath) -> list:
        base = _strip(p.stem, "_edgemask")
        ok = base and p.parent.name == "edgemask" and p.parent.parent.name == "4cam_splc"
        return [(p.parent.parent, base)] if ok else []

    masks = _group(images, mask_keys)
    tampered = [
        (p, _pick(masks, (p.parent, p.stem), p, tree.root)) for p in images if p.parent.name == "4cam_splc"
    ]
    authentic = [p for p in images if p.parent.name == "4cam_auth"]
    return _finish(
        "columbia",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for="4cam_splc/<stem>.tif, 4cam_splc/edgemask/<stem>_edgemask.jpg, 4cam_auth/<stem>.tif",
    )


_COVERAGE_TAMPERED = re.compile(r"^(\d+)t$")
_COVERAGE_AUTHENTIC = re.compile(r"^(\d+)$")
_COVERAGE_MASK = re.compile(r"^(\d+)forged$")


def _coverage(
    root: str | Path,
    *,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127",
) -> IndexResult:
    """COVERAGE: ``image/<N>t.tif`` + ``mask/<N>forged.tif``; ``image/<N>.tif`` authentic.

    ``mask/<N>copy.tif`` and ``mask/<N>paste.tif`` (source / target only) are not the forged-region mask.
    """
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()

    def mask_keys(p: PurePosixPath) -> list:
        m = _COVERAGE_MASK.match(p.stem)
        return [(p.parent.parent, m.group(1))] if m and p.parent.name == "mask" else []

    masks = _group(images, mask_keys)
    in_image = [p for p in images if p.parent.name == "image"]
    tampered = [
        (p, _pick(masks, (p.parent.parent, m.group(1)), p, tree.root))
        for p in in_image
        if (m := _COVERAGE_TAMPERED.match(p.stem))
    ]
    authentic = [p for p in in_image if _COVERAGE_AUTHENTIC.match(p.stem)]
    return _finish(
        "coverage",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for="image/<N>t.tif, mask/<N>forged.tif, image/<N>.tif",
    )


_IMD_TAMPERED = re.compile(r"^.+_\d+$")


def _imd2020(
    root: str | Path,
    *,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127",
) -> IndexResult:
    """IMD2020: ``<dir>/<id>_<k>.<ext>`` (k = 0, 1, ...) + ``<dir>/<id>_<k>_mask.png``; authentic
    ``<id>_orig.<ext>``."""
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()
    masks = _group(images, lambda p: [(p.parent, k)] if (k := _strip(p.stem, "_mask")) else [])
    tampered = [
        (p, _pick(masks, (p.parent, p.stem), p, tree.root)) for p in images if _IMD_TAMPERED.match(p.stem)
    ]
    authentic = [p for p in images if _strip(p.stem, "_orig")]
    return _finish(
        "imd2020",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for="<dir>/<id>_<k>.<ext>, <dir>/<id>_<k>_mask.png, <id>_orig.<ext>",
    )


def _dso1(
    root: str | Path,
    *,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127_inv",
) -> IndexResult:
    """DSO-1: ``DSO-1/splicing-XX.png`` + ``DSO-1-Fake-Images-Masks/splicing-XX.png`` (black = tampered);
    ``DSO-1/normal-XX.png`` authentic."""
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()
    masks = _group(images, lambda p: [p.stem] if p.parent.name == "DSO-1-Fake-Images-Masks" else [])
    in_dso = [p for p in images if p.parent.name == "DSO-1"]
    tampered = [(p, _pick(masks, p.stem, p, tree.root)) for p in in_dso if p.stem.startswith("splicing-")]
    authentic = [p for p in in_dso if p.stem.startswith("normal-")]
    return _finish(
        "dso1",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for="DSO-1/splicing-XX.png, DSO-1-Fake-Images-Masks/splicing-XX.png, DSO-1/normal-XX.png",
    )


def _folder(
    root: str | Path,
    *,
    tampered_dir: str = "Tp",
    mask_dir: str = "Gt",
    authentic_dir: str | None = "Au",
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127",
) -> IndexResult:
    """Generic folders: ``<tampered_dir>/<sub>/<stem>.*`` + ``<mask_dir>/<sub>/<stem>{,_gt,_mask}.*``.

    Folder options are paths relative to root; sub-folders are mirrored between the image and mask folders.
    ``authentic_dir`` is optional (None or absent folder = no authentic images).
    """
    _check_common(include_authentic, missing_mask, mask_rule)
    tree = _walk(Path(root))
    images = tree.images()
    tp, gt = PurePosixPath(tampered_dir), PurePosixPath(mask_dir)
    au = PurePosixPath(authentic_dir) if authentic_dir else None

    def within(p: PurePosixPath, folder: PurePosixPath | None) -> bool:
        return folder is not None and p.parts[: len(folder.parts)] == folder.parts

    def mask_keys(p: PurePosixPath) -> list:
        if not within(p, gt):
            return []
        sub = p.relative_to(gt).parent
        bases = {p.stem} | {b for s in ("_gt", "_mask") if (b := _strip(p.stem, s))}
        return [(sub, b) for b in bases]

    masks = _group(images, mask_keys)
    tampered = [
        (p, _pick(masks, (p.relative_to(tp).parent, p.stem), p, tree.root)) for p in images if within(p, tp)
    ]
    authentic = [p for p in images if within(p, au)]
    return _finish(
        "folder",
        tree,
        tampered,
        authentic,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
        looked_for=f"{tp}/**/<stem>.<ext>, {gt}/**/<stem>{{,_gt,_mask}}.<ext>" + (f", {au}/**" if au else ""),
    )


# ------------------------------------------------------------------------------------------- index files
def _resolve_index(index: str | Path | None, root: Path | None, name: str) -> Path:
    if index is None:
        raise DataError(f"{root}: dataset {name!r} requires an index file (pass index=...)")
    index = Path(index)
    tried = [index] if index.is_absolute() or root is None else [root / index, index]
    for cand in tried:
        if cand.is_file():
            return cand
    raise DataError(f"{index}: index file not found (tried {', '.join(map(str, tried))})")


class _Row(NamedTuple):
    where: int  # line (CSV) or entry (JSON) number, for error messages
    image: str
    mask: str  # "" = authentic
    target_without_mask: bool = False  # NIST IsTarget=Y with an empty mask name


def _read_rows(index: Path, allow_nist: bool) -> list[_Row]:
    """Rows of an ``image,mask`` CSV or (``allow_nist``) a NIST pipe-separated reference file."""
    try:
        text = index.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{index}: cannot read index file ({exc})") from exc
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{index}: index file is empty")
    nist = allow_nist and "|" in lines[0] and "ProbeFileName" in lines[0].split("|")
    reader = csv.DictReader(lines, delimiter="|" if nist else ",")
    header = reader.fieldnames or []
    img_col, mask_col = ("ProbeFileName", "ProbeMaskFileName") if nist else ("image", "mask")
    if img_col not in header or mask_col not in header:
        wanted = "'ProbeFileName|ProbeMaskFileName' (NIST reference) or " if allow_nist else ""
        raise DataError(f"{index}: header must contain {wanted}'image,mask' (CSV); got {header}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        image, mask = (row.get(img_col) or "").strip(), (row.get(mask_col) or "").strip()
        if not image:
            raise DataError(f"{index}: line {lineno}: empty {img_col}")
        target = (row.get("IsTarget") or "").strip().upper() if nist else ""
        if target not in ("", "Y", "N"):
            raise DataError(f"{index}: line {lineno}: IsTarget must be Y or N, got {target!r}")
        if target == "N" and mask:
            raise DataError(f"{index}: line {lineno}: IsTarget is N but a mask is given ({mask})")
        rows.append(_Row(lineno, image, mask, target == "Y" and not mask))
    return rows


def _read_json_rows(index: Path) -> list[_Row]:
    """Rows of a JSON list of {"image", "mask"} objects or [image, mask] pairs."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{index}: cannot read JSON index ({exc})") from exc
    if not isinstance(data, list):
        raise DataError(f"{index}: JSON index must be a list, got {type(data).__name__}")
    rows = []
    for i, entry in enumerate(data):
        if isinstance(entry, dict) and "image" in entry:
            image, mask = entry["image"], entry.get("mask")
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            image, mask = entry
        else:
            raise DataError(f"{index}: entry {i} must be {{'image':..., 'mask':...}} or [image, mask]")
        if not isinstance(image, str) or not image.strip() or not isinstance(mask, str | None):
            raise DataError(f"{index}: entry {i}: image must be a non-empty string and mask a string or null")
        rows.append(_Row(i, image.strip(), (mask or "").strip()))
    return rows


def _from_rows(
    name: str,
    index: Path,
    base: Path,
    rows: list[_Row],
    *,
    mask_rule: str,
    include_authentic: bool,
    missing_mask: str,
) -> IndexResult:
    """Records from index rows with paths relative to ``base``; every referenced file must exist."""

    def resolve(rel: str) -> tuple[Path, str]:
        full = Path(os.path.normpath(base / rel))
        rel_id = os.path.relpath(full, base)
        return full, (full.as_posix() if rel_id.startswith("..") else PurePosixPath(Path(rel_id)).as_posix())

    by_id: dict[str, SplicingRecord] = {}
    absent: list[str] = []
    no_mask: list[str] = []
    excluded: list[str] = []
    for where, image, mask, target_without_mask in rows:
        img_path, rec_id = resolve(image)
        if not img_path.is_file():
            absent.append(str(img_path))
        if target_without_mask:
            no_mask.append(rec_id)
            continue
        mask_path = resolve(mask)[0] if mask else None
        if mask_path is not None and not mask_path.is_file():
            absent.append(str(mask_path))
        if mask_path is None and not include_authentic:
            excluded.append(rec_id)
            continue
        rec = SplicingRecord(rec_id, img_path, mask_path, int(mask_path is not None), mask_rule)
        if rec_id in by_id and by_id[rec_id] != rec:
            raise DataError(f"{index}: row {where}: {image} listed again with a different mask")
        by_id[rec_id] = rec
    if absent:
        absent = sorted(set(absent))
        raise DataError(f"{index}: {len(absent)} listed file(s) do not exist, e.g. {absent[:_SHOW]}")
    if no_mask and missing_mask == "error":
        raise DataError(
            f"{index}: {len(no_mask)} target image(s) have no mask, e.g. {sorted(no_mask)[:_SHOW]}; "
            f"pass missing_mask='skip' to leave them out (they are then reported)"
        )
    if not by_id:
        raise DataError(f"{index}: no {name} records found (root {base}); looked for rows of image,mask")
    skipped = {"missing_mask": sorted(set(no_mask)), "authentic_excluded": sorted(set(excluded))}
    return IndexResult(_sorted_unique(list(by_id.values()), index), skipped)


def _nist16(
    root: str | Path,
    *,
    index: str | Path | None = None,
    include_authentic: bool = True,
    missing_mask: str = "error",
    mask_rule: str = "lum127_inv",
) -> IndexResult:
    """NIST Nimble 2016: probe/mask names differ, so ``index`` is required.

    ``index`` (absolute, or relative to root, else to the working directory) is either the official
    pipe-separated reference file (``ProbeFileName``, ``ProbeMaskFileName``, optional ``IsTarget`` Y/N; an
    empty mask name = authentic; rows repeated for several donors are merged) or a CSV with columns
    ``image,mask``. Paths are relative to root. Default rule lum127_inv (official masks: black = manipulated).
    """
    _check_common(include_authentic, missing_mask, mask_rule)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root does not exist or is not a directory")
    index_path = _resolve_index(index, root, "nist16")
    rows = _read_rows(index_path, allow_nist=True)
    return _from_rows(
        "nist16",
        index_path,
        root,
        rows,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask=missing_mask,
    )


def _list(
    root: str | Path | None,
    *,
    index: str | Path | None = None,
    include_authentic: bool = True,
    mask_rule: str = "lum127",
) -> IndexResult:
    """Explicit pairs from ``index``: a CSV with columns ``image,mask`` or a JSON list of
    ``{"image": ..., "mask": ...}`` / ``[image, mask]``; an empty or null mask = authentic.

    Paths are relative to root, or to the index file's folder when root is None.
    """
    _check_common(include_authentic, "error", mask_rule)
    root_path = Path(root) if root is not None else None
    if root_path is not None and not root_path.is_dir():
        raise DataError(f"{root_path}: dataset root does not exist or is not a directory")
    index_path = _resolve_index(index, root_path, "list")
    is_json = index_path.suffix.lower() == ".json"
    rows = _read_json_rows(index_path) if is_json else _read_rows(index_path, allow_nist=False)
    base = root_path if root_path is not None else index_path.parent
    return _from_rows(
        "list",
        index_path,
        base,
        rows,
        mask_rule=mask_rule,
        include_authentic=include_authentic,
        missing_mask="error",
    )


class DataOptionError(DataError, TypeError):
    """An option the dataset's indexer does not take (a TypeError, as for a wrong keyword argument)."""


# -------------------------------------------------------------------------------------------- registry
_REPORTERS: dict[str, Callable[..., IndexResult]] = {
    "casia1": _casia1,
    "casia2": _casia2,
    "columbia": _columbia,
    "coverage": _coverage,
    "nist16": _nist16,
    "imd2020": _imd2020,
    "dso1": _dso1,
    "folder": _folder,
    "list": _list,
}


def index_dataset_report(name: str, root: str | Path | None, **options: object) -> IndexResult:
    """Index dataset ``name`` at ``root``: records sorted by id plus everything skipped, by reason.

    Raises ConfigError (a ValueError) for an unknown name or option value, TypeError for an unknown option,
    DataError when the root is missing, yields no record, or a required mask is absent (with
    ``missing_mask="error"``).
    """
    if name not in _REPORTERS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {sorted(_REPORTERS)}")
    fn = _REPORTERS[name]
    valid = [p for p in inspect.signature(fn).parameters if p != "root"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataOptionError(f"{name}: unknown option(s) {unknown}; valid options: {valid}")
    if root is None and name != "list":
        raise DataError(f"{name}: a dataset root is required (got None)")
    return fn(root, **options)


def index_dataset(name: str, root: str | Path | None, **options: object) -> list[SplicingRecord]:
    """Index dataset ``name`` at ``root`` and return its records sorted by id (see index_dataset_report).

    Skips are logged: a warning for tampered images left out for lack of a mask, info for the rest.
    """
    result = index_dataset_report(name, root, **options)
    for reason, paths in result.skipped.items():
        if paths:
            level = logging.WARNING if reason == "missing_mask" else logging.INFO
            log.log(
                level, "%s at %s: skipped %d (%s), e.g. %s", name, root, len(paths), reason, paths[:_SHOW]
            )
    return result.records


def _records_only(name: str) -> Callable[..., list[SplicingRecord]]:
    def indexer(root: str | Path | None, **options: object) -> list[SplicingRecord]:
        return index_dataset(name, root, **options)

    indexer.__name__ = name
    indexer.__doc__ = _REPORTERS[name].__doc__
    return indexer


DATASETS: dict[str, Callable[..., list[SplicingRecord]]] = {name: _records_only(name) for name in _REPORTERS}
