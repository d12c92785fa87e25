"""Step benchmarks: the time, memory and FLOPs of one training or inference step of a forgery module.

A training step is exactly what ``forgery-train`` runs: a Lightning ``Trainer`` fits the module built from
its ``model`` / ``loss`` / ``augmentation`` configs, so ``training_step`` (for MAT: clean pass, AGDA, AGDA
pass, CE + RIL + match), the backward pass, the configured optimizer's step, the precision plugin and the
per-batch hooks (edge targets and augmentation of the splicing module) all run as in training. An
inference step is ``predict_step`` under ``Trainer.predict`` (eval mode, inference mode). Batches are
random tensors of the data modules' layout, already in memory: the data loaders are measured separately
(:mod:`forgery.bench.loaders`).

Step time is the interval between the ends of consecutive batches (the GPU synchronised), after
``warmup`` batches (``cpu_s_per_step``: the process's CPU time over the same intervals); FLOPs are
counted once, eagerly, on a separate step of the same module before timing.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from forgery.bench.flops import count_flops
from forgery.bench.system import PeakMemory, set_threads, sync
from forgery.data.base import collate_skipping
from forgery.errors import ConfigError
from forgery.modules.base import ForgeryModule, build_module

__all__ = ["MODES", "PRECISIONS", "StepCase", "device_batch", "run_step_case", "spread"]

log = logging.getLogger(__name__)

MODES = ("train", "infer")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class StepCase:
    """One step benchmark. ``model`` / ``loss`` / ``augmentation`` are the resolved configs of those groups;
    ``channels_last`` None keeps the model config's setting; ``label`` names the case in the table."""

    label: str
    mode: str
    batch: int
    size: int
    model: Mapping[str, Any]
    loss: Mapping[str, Any]
    augmentation: Mapping[str, Any] | None = None
    precision: str = "32-true"
    channels_last: bool | None = None
    compile: bool = False
    device: str = "cpu"
    warmup: int = 1
    steps: int = 3
    count_flops: bool = True
    threads: int | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"bench case {self.label!r}: mode must be one of {MODES}, got {self.mode!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"bench case {self.label!r}: precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.batch < 1 or self.size < 16 or self.warmup < 1 or self.steps < 1:
            raise ConfigError(
                f"bench case {self.label!r}: needs batch >= 1, size >= 16, warmup >= 1 and steps >= 1, got "
                f"batch={self.batch}, size={self.size}, warmup={self.warmup}, steps={self.steps}"
            )


class _RepeatedSample(Dataset):
    """``length`` copies of one random sample of the task's layout (the loaders are benchmarked apart)."""

    def __init__(self, kind: str, size: int, length: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.kind, self.length = kind, length
        self.image = torch.rand(3, size, size, generator=g)
        self.mask = (torch.rand(1, size, size, generator=g) > 0.8).float()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        label = index % 2
        if self.kind == "splicing":
            return {
                "image": self.image,
                "mask": self.mask if label else torch.zeros_like(self.mask),
                "label": torch.tensor(label),
                "index": torch.tensor(index),
                "id": f"bench/{index}",
            }
        return {
            "image": self.image,
            "label": torch.tensor(label),
            "video_id": torch.tensor(index),
            "key": f"bench/{index}",
        }


class _StepTimer(pl.Callback):
    """Wall-clock time at the end of every batch, the device synchronised first."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []

    def _end(self) -> None:
        sync(self.device)
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._end()

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._end()


def _build(case: StepCase) -> ForgeryModule:
    model = dict(case.model)
    if case.channels_last is not None:
        model["channels_last"] = case.channels_last
    model["compile"] = case.compile
    return build_module(model, dict(case.loss), dict(case.augmentation) if case.augmentation else None)


def _loader(module: ForgeryModule, case: StepCase, batches: int) -> DataLoader:
    dataset = _RepeatedSample(module.kind, case.size, case.batch * batches)
    return DataLoader(dataset, batch_size=case.batch, shuffle=False, collate_fn=collate_skipping)


def device_batch(module: ForgeryModule, batch: int, size: int, device: str) -> dict[str, Any]:
    """One collated batch of ``batch`` samples of the module's layout at ``size``, on ``device``."""
    data = _RepeatedSample(module.kind, size, batch)
    collated = collate_skipping([data[i] for i in range(batch)])
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in collated.items()}


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and every value of a series of timings."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def _eager_flops(module: ForgeryModule, case: StepCase) -> int:
    """FLOPs of one eager step (training: ``training_step`` + backward; inference: ``predict_step``)."""
    batch = device_batch(module, case.batch, case.size, case.device)
    module.to(case.device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(case.precision)
    autocast = torch.autocast(case.device, dtype=dtype, enabled=dtype is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() without a trainer
        if case.mode == "train":
            module.train()
            batch = module.on_after_batch_transfer(batch, 0)

            def step() -> None:
                with autocast:
                    loss = module.training_step(batch, 0)
                loss.backward()

        else:
            module.eval()

            def step() -> None:
                with torch.inference_mode(), autocast:
                    module.predict_step(batch, 0)

        flops = count_flops(step)
    module.zero_grad(set_to_none=True)
    return flops


def run_step_case(case: StepCase | Mapping[str, Any]) -> dict[str, Any]:
    """Runs one case (see the module docstring); returns its JSON record."""
    if not isinstance(case, StepCase):
        case = StepCase(**{**case, "overrides": tuple(case.get("overrides", ()))})
    threads = set_threads(case.threads)
    pl.seed_everything(0, workers=False, verbose=False)
    module = _build(case)
    params = sum(p.numel() for p in module.parameters())
    flops = _eager_flops(module, case) if case.count_flops else None

    n = case.warmup + case.steps
    timer = _StepTimer(case.device)
    trainer = pl.Trainer(
        accelerator="gpu" if case.device == "cuda" else "cpu",
        devices=1,
        precision=case.precision,
        max_steps=n,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        benchmark=case.device == "cuda",
        callbacks=[timer],
    )
    memory = PeakMemory(case.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LightningModule.*log.*")
        memory.start()
        if case.mode == "train":
            trainer.fit(module, train_dataloaders=_loader(module, case, n))
        else:
            trainer.predict(module, dataloaders=_loader(module, case, n), return_predictions=False)
        peak = memory.stop()
    if len(timer.ends) != n:
        raise RuntimeError(f"bench case {case.label!r}: {len(timer.ends)} of {n} steps ran")
    times = [b - a for a, b in zip(timer.ends[case.warmup - 1 :], timer.ends[case.warmup :])]
    cpu = [b - a for a, b in zip(timer.cpu_ends[case.warmup - 1 :], timer.cpu_ends[case.warmup :])]
    median = statistics.median(times)
    record = {k: v for k, v in asdict(case).items() if k not in ("model", "loss", "augmentation")}
    record.update(
        model_target=case.model.get("_target_"),
        net=dict(case.model.get("net") or {}).get("_target_"),
        channels_last=bool(getattr(module, "uses_channels_last", module.hparams.get("channels_last", False))),
        threads=threads,
        params=params,
        step_s=spread(times),
        # CPU time of the whole process (all threads) per step: less sensitive than wall time to other
        # processes on a shared machine (with OMP_WAIT_POLICY=PASSIVE idle threads do not spin)
        cpu_s_per_step=statistics.median(cpu),
        images_per_s=case.batch / median,
        peak_memory_mb=peak,
        memory_kind=memory.kind,
        rss_reset=memory.rss_reset if case.device == "cpu" else None,
        flops_per_image=None if flops is None else flops / case.batch,
        achieved_flops_per_s=None if flops is None else flops / median,
    )
    record["overrides"] = list(case.overrides)
    return record
