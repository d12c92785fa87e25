"""``forgery-data audit data=<name> data.root=... [data.test=...]``: leakage and duplicates across splits.

Builds the datamodule as training would (same splits), runs :func:`forgery.data.audit.audit_datamodule`,
prints a table, writes ``audit.json`` in the run directory (and says where) and exits 1 when anything is
found.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from forgery.cli import hydra_app
from forgery.data.audit import audit_datamodule
from forgery.utils.run import extras, write_json

__all__ = ["audit_main", "print_report", "run_audit"]

log = logging.getLogger(__name__)


def run_audit(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """Audits ``cfg.data`` with ``cfg.audit``; returns the report and the path of the audit.json written."""
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    a = cfg.audit
    faces = getattr(datamodule, "kind", None) == "faces"
    report = audit_datamodule(
        datamodule,
        near_duplicates=bool(a.near_duplicates),
        threshold=int(a.face_threshold if faces else a.threshold),
        hash_size=int(a.hash_size),
        frames_per_video=a.frames_per_video if faces else None,
    )
    test = cfg.data.get("test")
    report = {
        "dataset": cfg.data.get("name"),
        "root": str(cfg.data.get("root")),
        "test_dataset": dict(test) if test else None,
        **report,
    }
    path = write_json(Path(cfg.paths.output_dir) / "audit.json", report)
    return report, path


def print_report(report: dict[str, Any], path: Path, max_rows: int = 50) -> None:
    """The findings as a rich table (at most ``max_rows`` rows), a summary line and where audit.json went."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    name = report["dataset"] + (
        f" (test: {report['test_dataset']['name']})" if report["test_dataset"] else ""
    )
    sizes = ", ".join(f"{s} {n}" for s, n in report["splits"].items())
    findings = report["findings"]
    if not findings:
        console.print(
            f"[green]{name}: no leakage or duplicates found[/green] ({sizes}; "
            f"{report['checked_images']} images hashed)"
        )
    else:
        table = Table(title=f"{name}: {len(findings)} finding(s) ({sizes})", show_lines=False)
        for col in ("kind", "splits", "items", "detail"):
            table.add_column(col, overflow="fold")
        for f in findings[:max_rows]:
            items = f["items"]
            shown = "\n".join(items[:4]) + (f"\n... {len(items) - 4} more" if len(items) > 4 else "")
            table.add_row(f["kind"], "/".join(f["splits"]), shown, f["detail"])
        console.print(table)
        if len(findings) > max_rows:
            console.print(f"{len(findings) - max_rows} more finding(s) in audit.json")
        counts = ", ".join(f"{k} {n}" for k, n in report["counts"].items() if n)
        console.print(f"[red]{name}: {counts}[/red]")
    console.print(f"forgery-data audit: report written to {path}")


@hydra_app("audit", prog="forgery-data audit")
def audit_main(cfg: DictConfig) -> None:
    """Audits ``cfg.data``; writes audit.json; exits 1 when anything is found."""
    extras(cfg)
    report, path = run_audit(cfg)
    print_report(report, path, int(cfg.audit.get("max_rows", 50)))
    if report["findings"]:
        sys.exit(1)
