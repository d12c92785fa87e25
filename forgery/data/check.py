"""Dataset validation: decode every sample of every split with the readers training uses (``forgery-data
check``), so that every problem (a truncated JPEG, a mask of another size, a missing file, ...) is reported
at once, with the file and the reason."""

from __future__ import annotations

from typing import Any

__all__ = ["check_datamodule"]


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
