"""``forgery-data check data=<name> data.root=...``: validate a dataset up front and print its problems.

Every image and mask of every split is decoded with the same readers training and evaluation use, so the
same problems (a truncated JPEG, a mask of another size, a missing file, ...) are reported here, all at once,
with the file and the reason. Writes ``check.json`` in the run directory; exits 1 when there are problems.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from forgery.train import CONFIG_DIR
from forgery.utils.run import extras, write_json

__all__ = ["check_datamodule", "main"]

log = logging.getLogger(__name__)


def _sample_name(dataset: Any, index: int) -> str:
    if hasattr(dataset, "records"):
        return str(dataset.records[index].image)
    if hasattr(dataset, "rows"):
        return str(dataset.rows[dataset.indices[index]].path)
    return str(index)


def check_datamodule(datamodule: Any) -> dict[str, Any]:
    """Loads every sample of every split: ``{"splits": {split: n}, "problems": [{split, file, problem}]}``."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    problems: list[dict[str, str]] = []
    sizes: dict[str, int] = {}
    for split, dataset in datamodule.datasets.items():
        sizes[split] = len(dataset)
        load = getattr(dataset, "load", dataset.__getitem__)
        for i in range(len(dataset)):
            try:
                load(i)
            except (ValueError, OSError) as err:  # DataError / FaceDataError are ValueErrors
                problems.append({"split": split, "file": _sample_name(dataset, i), "problem": str(err)})
    return {"splits": sizes, "problems": problems}


def _print(report: dict[str, Any], name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not report["problems"]:
        console.print(f"[green]{name}: no problems[/green] in {report['splits']}")
        return
    table = Table(title=f"{name}: {len(report['problems'])} problem(s)")
    for col in ("split", "file", "problem"):
        table.add_column(col, overflow="fold")
    for p in report["problems"]:
        table.add_row(p["split"], p["file"], p["problem"])
    console.print(table)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="check")
def check_main(cfg: DictConfig) -> None:
    extras(cfg)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    report = check_datamodule(datamodule)
    report["dataset"] = cfg.data.get("name")
    _print(report, str(report["dataset"]))
    write_json(Path(cfg.paths.output_dir) / "check.json", report)
    if report["problems"]:
        sys.exit(1)


COMMANDS = {"check": check_main}


def main() -> None:
    """``forgery-data <command> [overrides]``; commands: check."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: forgery-data {{{','.join(COMMANDS)}}} data=<name> data.root=<path> [key=value ...]")
        sys.exit(2)
    COMMANDS[sys.argv.pop(1)]()


if __name__ == "__main__":
    main()
