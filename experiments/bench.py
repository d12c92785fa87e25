"""Speed and memory benchmarks (``make bench``): training-step throughput of each network, JSON out.

Usage: python experiments/bench.py [--out FILE] [--device cpu|cuda] [--steps N] [--amp]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from forgery.losses.mtse import MTSELoss
from forgery.losses.targets import edge_targets
from forgery.models.mtse_net import MTSENet


def _mtse(size: int, batch: int, device: str) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    net = MTSENet().to(device).to(memory_format=torch.channels_last)  # as SplicingModule runs it
    loss = MTSELoss()
    images = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.8).float()
    image_edge, mask_edge = edge_targets(images, masks)

    def step() -> torch.Tensor:
        return loss(net(images), masks[:, 0].long(), mask_edge, image_edge)["loss"]

    return net, step


def _mat(size: int, batch: int, device: str) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    from forgery.models.mat import MAT

    net = MAT().to(device)
    images = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    labels = torch.randint(0, 2, (batch,), device=device)

    def step() -> torch.Tensor:
        return nn.functional.cross_entropy(net(images).logits, labels)

    return net, step


BENCHES = {"mtse_net": (_mtse, [(256, 8), (384, 8)]), "mat_b4": (_mat, [(380, 4)])}


def run(name: str, size: int, batch: int, device: str, steps: int, amp: bool) -> dict:
    build, _ = BENCHES[name]
    net, step = build(size, batch, device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=amp):
            loss = step()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    result = {
        "model": name,
        "image_size": size,
        "batch": batch,
        "device": device,
        "amp": amp,
        "steps": steps,
        "median_step_s": round(sec, 4),
        "images_per_s": round(batch / sec, 2),
        "params": sum(p.numel() for p in net.parameters()),
    }
    if device == "cuda":
        result["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench.json"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--models", nargs="*", default=list(BENCHES))
    args = parser.parse_args()
    results = []
    for name in args.models:
        for size, batch in BENCHES[name][1]:
            r = run(name, size, batch, args.device, args.steps, args.amp)
            print(json.dumps(r))
            results.append(r)
    payload = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
