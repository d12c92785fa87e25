"""Split manifests (splits/<split>.txt, SHA256SUMS) of train and eval: one test hash on the same data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import hydra
import pytest

from forgery.cli.eval import evaluate
from forgery.cli.train import train
from forgery.data.manifest import manifest_summary, sample_id, split_ids, write_split_manifests
from tests.conftest import SMALL_FACES, SMALL_SPLICING


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_test_hash_equals_eval_hash(make_cfg) -> None:
    cfg = make_cfg(
        "train",
        [
            *SMALL_SPLICING,
            "model.net.width=8",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=1",
            "trainer.precision=32-true",
        ],
    )
    _, objects = train(cfg)
    run = Path(cfg.paths.output_dir)
    records = objects["datamodule"].records
    for split in ("train", "val", "test"):
        lines = (run / "splits" / f"{split}.txt").read_text().splitlines()
        assert lines == sorted(r.id for r in records[split]) and len(lines) == len(records[split])
        assert objects["splits"][split] == _sha(run / "splits" / f"{split}.txt")
    sums = (run / "splits" / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{objects['splits'][s]}  {s}.txt" for s in ("train", "val", "test")]
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["splits"]["test"] == {"n": 8, "sha256": objects["splits"]["test"]}
    assert trained["splits"]["train"]["n"] == 16

    eval_cfg = make_cfg("eval", [f"ckpt_path={trained['checkpoint']}", *SMALL_SPLICING])
    evaluate(eval_cfg)
    report = json.loads((Path(eval_cfg.paths.output_dir) / "metrics.json").read_text())
    assert report["splits"] == {"test": trained["splits"]["test"]}  # eval writes only the split it tests
    assert (Path(eval_cfg.paths.output_dir) / "splits" / "test.txt").read_text() == (
        run / "splits" / "test.txt"
    ).read_text()


def test_face_manifests_list_crops_once(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("train", [*SMALL_FACES, "data.balance=true", "data.synth.fake_frames=1"])
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    hashes = write_split_manifests(dm, tmp_path)
    train_ds = dm.datasets["train"]
    assert len(train_ds) > len(train_ds.rows)  # oversampled draws ...
    lines = (tmp_path / "splits" / "train.txt").read_text().splitlines()
    assert lines == sorted(f"{r.key}@{r.frame}" for r in train_ds.rows)  # ... but each crop listed once
    assert lines[0].startswith("faces_synth/") and "@" in lines[0]
    summary = manifest_summary(tmp_path)
    assert {s: v["sha256"] for s, v in summary.items()} == hashes
    assert summary["test"]["n"] == len(dm.datasets["test"].rows) == 2 * (2 + 1)
    assert write_split_manifests(dm, tmp_path / "again") == hashes  # deterministic


def test_manifest_tampering_and_bad_ids(tmp_path: Path) -> None:
    class Rec:
        def __init__(self, i: str) -> None:
            self.id = i

    class DM:
        records = {"test": [Rec("b.jpg"), Rec("a.jpg")]}

    hashes = write_split_manifests(DM(), tmp_path)
    assert (tmp_path / "splits" / "test.txt").read_text() == "a.jpg\nb.jpg\n"
    assert hashes["test"] == hashlib.sha256(b"a.jpg\nb.jpg\n").hexdigest()
    (tmp_path / "splits" / "test.txt").write_text("a.jpg\n")
    with pytest.raises(ValueError, match="does not match its sha256"):
        manifest_summary(tmp_path)
    DM.records = {"test": [Rec("bad\nname.jpg")]}
    with pytest.raises(ValueError, match="line break"):
        split_ids(DM())
    with pytest.raises(TypeError, match="no sample id"):
        sample_id(object())
    DM.records = {"test": [Rec("a.jpg")]}
    with pytest.raises(ValueError, match="no split"):
        write_split_manifests(DM(), tmp_path, splits=["val"])
