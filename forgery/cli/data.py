"""``forgery-data <command> data=<name> data.root=<path> [key=value ...]`` (``python -m forgery.cli.data``).

Commands:
- ``check`` (conf/check.yaml): decode every image and mask of every split with the readers training uses,
  print a table of problems (file and reason), write ``check.json`` in the run directory, exit 1 when there
  is any.
- ``audit`` (conf/audit.yaml): leakage and duplicates across train/val/test (:mod:`forgery.cli.audit`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from forgery.cli import hydra_app
from forgery.cli.audit import audit_main
from forgery.data.check import check_datamodule
from forgery.utils.run import extras, write_json

__all__ = ["COMMANDS", "check_main", "main"]

log = logging.getLogger(__name__)


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


@hydra_app("check", prog="forgery-data check")
def check_main(cfg: DictConfig) -> None:
    """Validates ``cfg.data``; writes check.json; exits 1 when any sample has a problem."""
    extras(cfg)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    report = check_datamodule(datamodule)
    report["dataset"] = cfg.data.get("name")
    _print(report, str(report["dataset"]))
    path = write_json(Path(cfg.paths.output_dir) / "check.json", report)
    print(f"forgery-data check: report written to {path}", flush=True)
    if report["problems"]:
        sys.exit(1)


COMMANDS: dict[str, tuple[Callable[[], Any], str]] = {
    "check": (check_main, "decode every sample of every split and list the problems (check.json)"),
    "audit": (audit_main, "leakage and duplicates across the splits (audit.json); see forgery/cli/audit.py"),
}

DEFAULT_COMMAND = "check"  # what `forgery-data --cfg job` or `forgery-data data=...` runs


def _usage() -> str:
    lines = ["usage: forgery-data <command> data=<name> data.root=<path> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`forgery-data <command> --help` lists the config groups and options."]
    return "\n".join(lines)


def main() -> None:
    """Dispatches ``forgery-data <command>`` to that command's Hydra app; flags or overrides with no command
    before them (``forgery-data --cfg job``) go to :data:`DEFAULT_COMMAND`, which is said on stderr."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(_usage())
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    if sys.argv[1].startswith("-") or "=" in sys.argv[1]:  # flags or overrides, no command: check
        print(
            f"forgery-data: no command given; running forgery-data {DEFAULT_COMMAND} "
            f"{' '.join(sys.argv[1:])} (commands: {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        sys.argv.insert(1, DEFAULT_COMMAND)
    if sys.argv[1] not in COMMANDS:
        print(f"forgery-data: error: unknown command {sys.argv[1]!r}\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    COMMANDS[sys.argv.pop(1)][0]()


if __name__ == "__main__":
    main()
