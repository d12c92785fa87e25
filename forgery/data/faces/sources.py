"""Video indexers for the face-forgery datasets (FF++, Celeb-DF, DFDC) and for folders of frames.

Every indexer returns a :class:`VideoIndex`: the videos of one split that exist on disk plus the keys of
those the dataset lists but that are absent (``missing``), so a partial download is counted and reported,
never silently shrunk. A video's key is ``<dataset>/<method>/<compression>/<id>`` and is unique, so
video-level metrics never merge two videos.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgery.errors import ConfigError

__all__ = [
    "CELEBDF_FOLDERS",
    "FFPP_METHODS",
    "FFPP_DEFAULT_METHODS",
    "FRAME_EXTENSIONS",
    "INDEXERS",
    "INDEX_COLUMNS",
    "SPLITS",
    "FaceDataError",
    "VideoIndex",
    "VideoRecord",
    "index_celebdf",
    "index_dfdc",
    "index_ffpp",
    "index_frames",
    "index_videos",
    "list_frames",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
FFPP_METHODS: tuple[str, ...] = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_DEFAULT_METHODS: tuple[str, ...] = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FFPP_COMPRESSIONS: tuple[str, ...] = ("c0", "c23", "c40")
# Celeb-DF (v2) folder -> label; matched case-insensitively ("Youtube-real" exists in the wild).
CELEBDF_FOLDERS: dict[str, int] = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}
CELEBDF_LIST = "List_of_testing_videos.txt"
FRAME_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
NO_COMPRESSION = "na"
# Columns of a face-crop index (extraction and faces_synth): one row per crop, path relative to the CSV.
INDEX_COLUMNS: tuple[str, ...] = (
    "key",
    "frame",
    "path",
    "label",
    "dataset",
    "method",
    "compression",
    "split",
)


class FaceDataError(ValueError):
    """A face dataset file or layout is unusable; the message names the file (or root) and the problem."""


@dataclass(frozen=True)
class VideoRecord:
    """One video (a file, or a folder of its frames) with its label (0 real, 1 fake) and provenance."""

    key: str
    path: Path
    label: int
    dataset: str
    method: str
    compression: str
    split: str


@dataclass
class VideoIndex:
    """Videos of one split that exist, keys of listed-but-absent ones, and other skipped entries by reason."""

    videos: list[VideoRecord]
    missing: list[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dup = [k for k, n in Counter(v.key for v in self.videos).items() if n > 1]
        if dup:
            raise FaceDataError(f"video keys must be unique, duplicated: {sorted(dup)[:10]}")

    def summary(self) -> dict[str, Any]:
        """Counts for logs and reports: videos, reals, fakes, missing (with keys), skipped by reason."""
        n_fake = sum(v.label for v in self.videos)
        return {
            "videos": len(self.videos),
            "real": len(self.videos) - n_fake,
            "fake": n_fake,
            "missing": len(self.missing),
            "missing_keys": list(self.missing),
            "skipped": {k: len(v) for k, v in self.skipped.items()},
        }


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def _child_ci(parent: Path, name: str) -> Path | None:
    """The child of ``parent`` called ``name``, compared case-insensitively (exact match preferred)."""
    exact = parent / name
    if exact.exists():
        return exact
    if not parent.is_dir():
        return None
    hits = [p for p in parent.iterdir() if p.name.lower() == name.lower()]
    return hits[0] if hits else None


# ----------------------------------------------------------------------------------------------- FF++


def _ffpp_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        pairs = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FaceDataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(pairs, list):
        raise FaceDataError(f"{path}: expected a JSON list of [target, source] id pairs, got {type(pairs)}")
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise FaceDataError(
                f'{path}: entry {i} must be a pair of video ids like ["953", "974"], got {pair!r}'
            )
        out.append((pair[0], pair[1]))
    return out


def _ffpp_split_file(root: Path, split: str, split_file: str | Path | None) -> Path:
    where = Path(split_file) if split_file is not None else root / "splits"
    path = where / f"{split}.json" if where.is_dir() or split_file is None else where
    if not path.is_file():
        raise FaceDataError(
            f"{path}: FF++ split file not found (give split_file= a folder with train/val/test.json as in "
            "the official FaceForensics repo, or one JSON file)"
        )
    return path


def _ffpp_comp_dir(base: Path, compression: str) -> Path:
    """``<base>/<compression>``; the official download script names c0 ``raw``, so fall back to that."""
    d = base / compression
    if compression == "c0" and not d.exists() and (base / "raw").exists():
        return base / "raw"
    return d


def index_ffpp(
    root: str | Path,
    split: str,
    methods: Sequence[str] = FFPP_DEFAULT_METHODS,
    compression: str = "c23",
    split_file: str | Path | None = None,
    include_real: bool = True,
) -> VideoIndex:
    """FaceForensics++ in its official layout.

    Reals ``original_sequences/youtube/<comp>/videos/<id>.mp4``, fakes
    ``manipulated_sequences/<Method>/<comp>/videos/<a>_<b>.mp4``. The split JSON (``splits/<split>.json`` by
    default) lists pairs ``[a, b]``: reals ``a`` and ``b`` and, for every selected method, fakes ``a_b`` and
    ``b_a``. Keys: ``ffpp/<Method or youtube>/<comp>/<id>``.
    """
    _check_split(split)
    root = Path(root)
    if compression not in FFPP_COMPRESSIONS:
        raise ConfigError(f"FF++ compression must be one of {FFPP_COMPRESSIONS}, got {compression!r}")
    canon = {m.lower(): m for m in FFPP_METHODS}
    bad = [m for m in methods if m.lower() not in canon]
    if bad:
        raise ConfigError(f"unknown FF++ method(s) {bad}; choose from {list(FFPP_METHODS)}")
    methods = list(dict.fromkeys(canon[m.lower()] for m in methods))
    pairs = _ffpp_pairs(_ffpp_split_file(root, split, split_file))

    # (method or None for reals, id)
    wanted: list[tuple[str | None, str]] = []
    if include_real:
        wanted += [(None, vid) for pair in pairs for vid in pair]
    wanted += [(m, f"{a}_{b}") for m in methods for x, y in pairs for a, b in ((x, y), (y, x))]

    videos, missing = [], []
    for method, vid in wanted:
        if method is None:
            base = root / "original_sequences" / "youtube"
            name, label = "youtube", 0
        else:
            base = root / "manipulated_sequences" / method
            name, label = method, 1
        path = _ffpp_comp_dir(base, compression) / "videos" / f"{vid}.mp4"
        key = f"ffpp/{name}/{compression}/{vid}"
        if path.is_file():
            videos.append(VideoRecord(key, path, label, "ffpp", name, compression, split))
        else:
            missing.append(key)
    return VideoIndex(videos, missing)


# ------------------------------------------------------------------------------------------- Celeb-DF


def _celebdf_folders(root: Path) -> dict[str, Path]:
    """Canonical folder name -> its path on disk (case-insensitive); absent folders are left out."""
    out = {}
    for name in CELEBDF_FOLDERS:
        p = _child_ci(root, name)
        if p is not None and p.is_dir():
            out[name] = p
    return out


def _celebdf_test_list(root: Path) -> list[tuple[str, str, int]]:
    """(canonical folder, file name, label 0 real / 1 fake) per line; the list file itself says 1 = REAL."""
    path = _child_ci(root, CELEBDF_LIST)
    if path is None or not path.is_file():
        raise FaceDataError(
            f"{root / CELEBDF_LIST}: Celeb-DF test list not found (needed for the test split and to keep "
            "train disjoint from it)"
        )
    canon = {n.lower(): n for n in CELEBDF_FOLDERS}
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1") or "/" not in parts[1]:
            raise FaceDataError(
                f"{path}:{n}: expected '<1 real | 0 fake> <folder>/<video>.mp4', got {line!r}"
            )
        folder, _, fname = parts[1].partition("/")
        if folder.lower() not in canon:
            raise FaceDataError(
                f"{path}:{n}: unknown folder {folder!r}; expected one of {list(CELEBDF_FOLDERS)}"
            )
        folder = canon[folder.lower()]
        label = 1 - int(parts[0])
        if label != CELEBDF_FOLDERS[folder]:
            raise FaceDataError(
                f"{path}:{n}: says {'REAL' if label == 0 else 'FAKE'} for a video in {folder}, which holds "
                f"{'reals' if CELEBDF_FOLDERS[folder] == 0 else 'fakes'}"
            )
        out.append((folder, fname, label))
    return out


def _celebdf_identity(folder: str, stem: str) -> str:
    """Target identity (``id12`` of ``id12_0003`` / ``id12_id5_0003``); a YouTube-real video is its own."""
    m = re.match(r"(id\d+)_", stem)
    return m.group(1) if folder != "YouTube-real" and m else f"{folder}/{stem}"


def _in_val(identity: str, val_fraction: float) -> bool:
    return zlib.crc32(identity.encode()) % 10_000 < round(val_fraction * 10_000)


def index_celebdf(root: str | Path, split: str, val_fraction: float = 0.1) -> VideoIndex:
    """Celeb-DF (v2): ``Celeb-real/``, ``YouTube-real/`` (any case), ``Celeb-synthesis/``.

    ``test`` is ``List_of_testing_videos.txt`` (whose label 1 means REAL). ``train``/``val`` are all other
    videos on disk; Celeb-DF has no official validation split, so ``val`` takes the target identities whose
    CRC32 falls in ``val_fraction`` (stable across machines and file orders). Keys:
    ``celebdf/<folder>/na/<stem>``.
    """
    _check_split(split)
    root = Path(root)
    if not root.is_dir():
        raise FaceDataError(f"{root}: Celeb-DF root not found")
    folders = _celebdf_folders(root)
    listed = _celebdf_test_list(root)
    videos, missing = [], []
    if split == "test":
        for folder, fname, label in listed:
            stem = Path(fname).stem
            key = f"celebdf/{folder}/{NO_COMPRESSION}/{stem}"
            path = folders[folder] / fname if folder in folders else root / folder / fname
            if path.is_file():
                videos.append(VideoRecord(key, path, label, "celebdf", folder, NO_COMPRESSION, split))
            else:
                missing.append(key)
        return VideoIndex(videos, missing)

    if not folders:
        raise FaceDataError(f"{root}: none of the Celeb-DF folders {list(CELEBDF_FOLDERS)} found")
    test_set = {(folder, fname) for folder, fname, _ in listed}
    for folder, path_dir in folders.items():
        for path in sorted(path_dir.glob("*.mp4")):
            if (folder, path.name) in test_set:
                continue
            if _in_val(_celebdf_identity(folder, path.stem), val_fraction) != (split == "val"):
                continue
            key = f"celebdf/{folder}/{NO_COMPRESSION}/{path.stem}"
            label = CELEBDF_FOLDERS[folder]
            videos.append(VideoRecord(key, path, label, "celebdf", folder, NO_COMPRESSION, split))
    return VideoIndex(videos, missing)


# ----------------------------------------------------------------------------------------------- DFDC


_PART = re.compile(r"dfdc_train_part_(\d+)$")


def _dfdc_label(value: Any, where: str) -> int:
    if value not in ("REAL", "FAKE"):
        raise FaceDataError(f"{where}: label must be REAL or FAKE, got {value!r}")
    return int(value == "FAKE")


def _dfdc_test_csv(root: Path, labels_csv: str | Path | None) -> Path:
    cands = (
        [Path(labels_csv)] if labels_csv is not None else [root / "labels.csv", root / "test" / "labels.csv"]
    )
    for c in cands:
        if c.is_file():
            return c
    raise FaceDataError(f"{cands[0]}: DFDC test labels.csv not found (columns filename,label with 1 = fake)")


def index_dfdc(
    root: str | Path,
    split: str,
    val_parts: Iterable[int] = range(45, 50),
    labels_csv: str | Path | None = None,
    video_dir: str | Path | None = None,
) -> VideoIndex:
    """DFDC: ``dfdc_train_part_<k>/metadata.json`` (``{"x.mp4": {"label": "FAKE" | "REAL", ...}}``).

    DFDC has no official validation split: parts in ``val_parts`` form ``val``, the other parts ``train``.
    ``test`` reads the public test set's ``labels.csv`` (``filename,label``, 1 = fake; at ``root/labels.csv``
    or ``root/test/labels.csv`` unless given), videos beside it or in ``video_dir``. Keys:
    ``dfdc/<REAL|FAKE>/na/<stem>`` (DFDC file names are unique across parts; checked).
    """
    _check_split(split)
    root = Path(root)
    videos, missing = [], []
    if split == "test":
        csv_path = _dfdc_test_csv(root, labels_csv)
        vdirs = [Path(video_dir)] if video_dir is not None else [csv_path.parent, csv_path.parent / "videos"]
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
                raise FaceDataError(f"{csv_path}: needs columns filename,label; has {reader.fieldnames}")
            for n, row in enumerate(reader, 2):
                if row["label"].strip() not in ("0", "1"):
                    raise FaceDataError(
                        f"{csv_path}:{n}: label must be 0 (real) or 1 (fake), got {row['label']!r}"
                    )
                label = int(row["label"])
                name = row["filename"].strip()
                method = "FAKE" if label else "REAL"
                key = f"dfdc/{method}/{NO_COMPRESSION}/{Path(name).stem}"
                path = next((d / name for d in vdirs if (d / name).is_file()), None)
                if path is None:
                    missing.append(key)
                else:
                    videos.append(VideoRecord(key, path, label, "dfdc", method, NO_COMPRESSION, split))
        return VideoIndex(videos, missing)

    val = set(val_parts)
    parts = (
        sorted((int(m.group(1)), d) for d in root.iterdir() if d.is_dir() and (m := _PART.match(d.name)))
        if root.is_dir()
        else []
    )
    if not parts:
        raise FaceDataError(f"{root}: no dfdc_train_part_<k>/ folders found")
    seen: dict[str, Path] = {}
    for k, part in parts:
        if (k in val) != (split == "val"):
            continue
        meta_path = part / "metadata.json"
        if not meta_path.is_file():
            raise FaceDataError(f"{meta_path}: missing (every DFDC train part ships one)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise FaceDataError(f"{meta_path}: not valid JSON ({e})") from e
        for name, info in sorted(meta.items()):
            label = _dfdc_label(info.get("label") if isinstance(info, dict) else None, f"{meta_path}: {name}")
            stem = Path(name).stem
            if stem in seen:
                raise FaceDataError(f"{meta_path}: video {name} is also listed in {seen[stem]}")
            seen[stem] = meta_path
            method = "FAKE" if label else "REAL"
            key = f"dfdc/{method}/{NO_COMPRESSION}/{stem}"
            path = part / name
            if path.is_file():
                videos.append(VideoRecord(key, path, label, "dfdc", method, NO_COMPRESSION, split))
            else:
                missing.append(key)
    return VideoIndex(videos, missing)


# --------------------------------------------------------------------------------------------- frames


def list_frames(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (the frame order)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)


_LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "fake": 1}


def _frames_from_folders(root: Path, split: str) -> VideoIndex:
    split_dir = root / split
    if not split_dir.is_dir():
        raise FaceDataError(f"{split_dir}: frames layout needs <root>/<split>/<real|fake>/<video>/<frames>")
    videos, empty = [], []
    for label_name in ("real", "fake"):
        label_dir = split_dir / label_name
        if not label_dir.is_dir():
            continue
        for d in sorted(p for p in label_dir.rglob("*") if p.is_dir()):
            rel = d.relative_to(label_dir).as_posix()
            if list_frames(d):
                method = rel.split("/")[0] if "/" in rel else label_name
                key = f"frames/{label_name}/{NO_COMPRESSION}/{rel}"
                videos.append(
                    VideoRecord(key, d, _LABEL_WORDS[label_name], "frames", method, NO_COMPRESSION, split)
                )
            elif not any(p.is_dir() for p in d.iterdir()):
                empty.append(f"frames/{label_name}/{NO_COMPRESSION}/{rel}")
    if empty:
        log.warning("%s: %d video folder(s) hold no frames: %s", split_dir, len(empty), empty[:5])
    return VideoIndex(videos, [], {"empty": empty} if empty else {})


def _frames_from_manifest(manifest: Path, split: str) -> VideoIndex:
    if not manifest.is_file():
        raise FaceDataError(f"{manifest}: frames manifest not found")
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"path", "label", "split"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise FaceDataError(f"{manifest}: needs columns {sorted(need)}; has {reader.fieldnames}")
        rows = list(enumerate(reader, 2))
    videos, missing = [], []
    for n, row in rows:
        if row["split"] not in SPLITS:
            raise FaceDataError(f"{manifest}:{n}: split must be one of {SPLITS}, got {row['split']!r}")
        if row["split"] != split:
            continue
        word = row["label"].strip().lower()
        if word not in _LABEL_WORDS:
            raise FaceDataError(f"{manifest}:{n}: label must be 0/1/real/fake, got {row['label']!r}")
        label = _LABEL_WORDS[word]
        rel = row["path"].strip()
        path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
        dataset = row.get("dataset") or "frames"
        method = row.get("method") or ("fake" if label else "real")
        comp = row.get("compression") or NO_COMPRESSION
        key = row.get("key") or f"{dataset}/{method}/{comp}/{Path(rel).with_suffix('').as_posix()}"
        if path.exists():
            videos.append(VideoRecord(key, path, label, dataset, method, comp, split))
        else:
            missing.append(key)
    return VideoIndex(videos, missing)


def index_frames(root: str | Path, split: str, manifest: str | Path | None = None) -> VideoIndex:
    """Videos given as folders of frames (or as video files, through a manifest).

    Without ``manifest``: ``<root>/<split>/<real|fake>/<video...>/`` where every folder that directly holds
    images is one video (nested folders allowed; the first level under real/fake is the method), key
    ``frames/<real|fake>/na/<relative folder>``. Folders holding neither images nor sub-folders are reported
    as ``skipped["empty"]``. With ``manifest``: a CSV with columns ``path,label,split`` (label 0/1/real/fake,
    path relative to the CSV) and optional ``key,dataset,method,compression``.
    """
    _check_split(split)
    root = Path(root)
    if manifest is not None:
        m = Path(manifest)
        return _frames_from_manifest(m if m.is_absolute() else root / m, split)
    return _frames_from_folders(root, split)


# ---------------------------------------------------------------------------------------------- entry

INDEXERS: dict[str, Callable[..., VideoIndex]] = {
    "ffpp": index_ffpp,
    "celebdf": index_celebdf,
    "dfdc": index_dfdc,
    "frames": index_frames,
}


def index_videos(name: str, root: str | Path, split: str, **opts: Any) -> VideoIndex:
    """Index split ``split`` of dataset ``name`` (one of :data:`INDEXERS`) under ``root``; logs a summary."""
    if name not in INDEXERS:
        raise ConfigError(f"unknown face dataset {name!r}; choose from {sorted(INDEXERS)}")
    index = INDEXERS[name](root, split, **opts)
    s = index.summary()
    log.info(
        "%s/%s: %d videos (%d real, %d fake), %d listed but missing%s",
        name,
        split,
        s["videos"],
        s["real"],
        s["fake"],
        s["missing"],
        f", skipped {s['skipped']}" if s["skipped"] else "",
    )
    return index
