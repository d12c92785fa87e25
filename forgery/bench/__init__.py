"""Benchmarks of forgery's training and inference steps, data loaders, evaluation memory and face extraction
(``forgery-bench``, ``make bench``). Library only: the Hydra app is :mod:`forgery.cli.bench`."""

from forgery.bench.report import SCHEMA_VERSION, check_schema, format_table
from forgery.bench.runner import expand_cases, run_bench
from forgery.bench.steps import StepCase, run_step_case

__all__ = [
    "SCHEMA_VERSION",
    "StepCase",
    "check_schema",
    "expand_cases",
    "format_table",
    "run_bench",
    "run_step_case",
]
