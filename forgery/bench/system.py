"""What the benchmarks run on, and how much memory a stretch of work peaked at.

Peak memory is the resident set size (RSS) on CPU and ``torch.cuda.max_memory_allocated`` on a GPU. On Linux
the RSS high-water mark is reset between measurements (``/proc/self/clear_refs``), so successive
measurements in one process do not inherit each other's peaks; where that is impossible the process's
lifetime peak is reported, and said so (``rss_reset: false``).
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch

from forgery.errors import ConfigError

__all__ = ["PeakMemory", "machine_info", "matmul_peak", "resolve_device", "set_threads", "sync"]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu`` and ``cuda`` are checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"bench: device must be cpu, cuda or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench: device=cuda but no GPU is visible (torch.cuda.is_available() is False)")
    return device


def set_threads(threads: int | None) -> int:
    """Intra-op threads for this process (None keeps torch's choice); returns the number in use."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def sync(device: str) -> None:
    """Waits for queued GPU work, so that wall-clock intervals measure it."""
    if device == "cuda":
        torch.cuda.synchronize()


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of the work between :meth:`start` and :meth:`stop` (MB), see the module docstring."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device == "cuda" else "rss"
        self.rss_reset = False

    def start(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.rss_reset = _status_kb("VmHWM") is not None
        except OSError:
            self.rss_reset = False
        return self

    def stop(self) -> float:
        """Peak in MB since :meth:`start`."""
        if self.device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        hwm = _status_kb("VmHWM") if self.rss_reset else None
        if hwm is None:  # lifetime peak (ru_maxrss is in kB on Linux)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return hwm / 1024


def matmul_peak(device: str, dtype: torch.dtype, n: int | None = None, seconds: float = 1.0) -> float:
    """Achieved FLOP/s of a square ``n`` x ``n`` matmul in ``dtype`` (best of repeated calls for ``seconds``):
    the machine's practical peak that the models' achieved FLOP/s are compared with."""
    n = n or (8192 if device == "cuda" else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    sync(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def machine_info(device: str) -> dict[str, Any]:
    """Versions, CPU/GPU names and thread count of this process."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "cuda": torch.version.cuda if device == "cuda" else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if device == "cuda" else None,
    }
    return info
