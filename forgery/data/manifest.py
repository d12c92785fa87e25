"""Split manifests: the sample ids of every split, written into the run directory with their sha256.

A run's ``splits/<split>.txt`` lists the ids of that split's samples, **sorted** (Python string order, one id
per line, ``\\n``-terminated, UTF-8), so the hash names the set of samples whatever order the files were
found in; ``splits/SHA256SUMS`` holds their hashes in ``sha256sum`` format (``cd splits && sha256sum -c
SHA256SUMS`` verifies them). ``forgery-eval`` on the same data writes the same test manifest, hence the same
hash as the training run's test split.

Ids:

* splicing: the record id, the image path relative to its dataset root (``Tp/x.jpg``); a test set from
  ``data.test`` is relative to its own root, so manifests do not depend on where the data lives;
* face crops: ``<video key>@<frame>`` (``ffpp/Deepfakes/c23/519_515@120``); oversampled repeats of the
  training split are not repeated in it (the manifest lists samples, not draws).

The hash covers ids, not file contents (hashing a dataset's bytes at every run start would be too slow; see
``forgery-data audit`` for content checks).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "SPLIT_ORDER",
    "manifest_summary",
    "manifest_text",
    "sample_id",
    "split_ids",
    "write_split_manifests",
]

SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test")
SUMS = "SHA256SUMS"


def sample_id(record: Any) -> str:
    """The manifest id of one record: a splicing record's ``id``, a face crop's ``<key>@<frame>``."""
    if hasattr(record, "key") and hasattr(record, "frame"):
        return f"{record.key}@{record.frame}"
    if hasattr(record, "id"):
        return str(record.id)
    raise TypeError(f"no sample id for a {type(record).__name__} (expected a splicing record or a face crop)")


def split_ids(datamodule: Any) -> dict[str, list[str]]:
    """``{split: sorted ids}`` of a set-up splicing or face datamodule (set up here when it is not yet)."""
    if not datamodule.records:
        datamodule.prepare_data()
        datamodule.setup("fit")
    ordered = sorted(datamodule.records, key=lambda s: (SPLIT_ORDER + (s,)).index(s))
    out = {}
    for split in ordered:
        ids = sorted(sample_id(r) for r in datamodule.records[split])
        bad = next((i for i in ids if "\n" in i or "\r" in i), None)
        if bad is not None:
            raise ValueError(f"{split} sample id {bad!r} contains a line break; it cannot go in a manifest")
        out[split] = ids
    return out


def manifest_text(ids: Iterable[str]) -> str:
    """The manifest file's content: one id per line, each ``\\n``-terminated."""
    return "".join(f"{i}\n" for i in ids)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def write_split_manifests(
    datamodule: Any, run_dir: str | Path, splits: Iterable[str] | None = None
) -> dict[str, str]:
    """Writes ``<run_dir>/splits/<split>.txt`` and ``SHA256SUMS``; returns ``{split: sha256}``.

    Args:
        datamodule: a splicing or face datamodule (set up here if it is not yet).
        run_dir: the run directory.
        splits: which splits (default: every split of the datamodule; forgery-eval writes only ``test``).
    """
    ids = split_ids(datamodule)
    chosen = list(ids) if splits is None else list(splits)
    unknown = [s for s in chosen if s not in ids]
    if unknown:
        raise ValueError(f"no split(s) {unknown} in the datamodule (has {list(ids)})")
    folder = Path(run_dir) / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split in chosen:
        text = manifest_text(ids[split])
        _write_atomic(folder / f"{split}.txt", text)
        hashes[split] = _sha256(text)
    _write_atomic(folder / SUMS, "".join(f"{h}  {s}.txt\n" for s, h in hashes.items()))
    return hashes


def manifest_summary(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{split: {"n": ids, "sha256": ...}}`` read back from ``<run_dir>/splits`` (what metrics.json carries),
    checked against ``SHA256SUMS``.

    Raises:
        ValueError: a manifest whose content does not match its recorded hash.
    """
    folder = Path(run_dir) / "splits"
    sums = folder / SUMS
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        recorded, name = line.split(maxsplit=1)
        text = (folder / name).read_text(encoding="utf-8")
        if _sha256(text) != recorded:
            raise ValueError(f"{folder / name}: content does not match its sha256 in {sums}")
        out[Path(name).stem] = {"n": text.count("\n"), "sha256": recorded}
    return out
