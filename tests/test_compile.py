"""``model.compile=true``: the compiled module trains to the same losses as eager, and saves the same names.

``aot_eager`` (graph capture and AOT autograd, eager kernels) runs by default; inductor (the default
backend: C++ code generation) takes minutes of compilation on 2 shared cores, so it runs with
``FORGERY_TEST_INDUCTOR=1``.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import pytest
import torch
import torch._inductor.config as inductor_config
from torch.utils.data import DataLoader

from forgery.cli.bench import compose_groups
from forgery.data.base import collate_skipping
from forgery.modules import build_module

CASES = {
    "mtse_net": ({"model": "mtse_net", "loss": "mtse", "augmentation": "flip"}, ["model.net.width=4"], 32),
    "mat": (
        {"model": "mat", "loss": "mat", "augmentation": "agda"},
        ["model.net.backbone=test_efficientnet"],
        64,
    ),
}


class _Losses(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _samples(kind: str, size: int, n: int = 6) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        image = torch.rand(3, size, size, generator=g)
        if kind == "splicing":
            mask = (torch.rand(1, size, size, generator=g) > 0.7).float()
            out.append(
                {
                    "image": image,
                    "mask": mask,
                    "label": torch.tensor(1),
                    "index": torch.tensor(i),
                    "id": str(i),
                }
            )
        else:
            out.append(
                {"image": image, "label": torch.tensor(i % 2), "video_id": torch.tensor(i), "key": str(i)}
            )
    return out


def _train(name: str, backend: str | None) -> tuple[list[float], list[str]]:
    groups, overrides, size = CASES[name]
    compiled = ["model.compile=true", f"model.compile_options={{backend: {backend}}}"] if backend else []
    cfg = compose_groups(groups, [*overrides, *compiled])
    pl.seed_everything(0, verbose=False)
    module = build_module(cfg["model"], cfg["loss"], cfg["augmentation"])
    losses = _Losses()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[losses],
    )
    loader = DataLoader(_samples(module.kind, size), batch_size=2, collate_fn=collate_skipping)
    trainer.fit(module, train_dataloaders=loader)
    return losses.losses, list(module.state_dict())


BACKENDS = [
    "aot_eager",
    pytest.param(
        "inductor",
        marks=pytest.mark.skipif(
            os.environ.get("FORGERY_TEST_INDUCTOR") != "1",
            reason="inductor compiles C++ for minutes on CPU: set FORGERY_TEST_INDUCTOR=1",
        ),
    ),
]


@pytest.mark.slow  # graph capture of forward and backward takes a while on 2 shared cores
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_compiled_training_matches_eager(name: str, backend: str) -> None:
    eager, eager_keys = _train(name, None)
    # inductor draws its own random numbers unless told to use eager's (MAT's head dropout and dropout)
    with inductor_config.patch(fallback_random=True):
        compiled, compiled_keys = _train(name, backend)
    assert len(eager) == len(compiled) == 3
    assert all(torch.isfinite(torch.tensor(eager)))
    assert compiled == pytest.approx(eager, rel=1e-3, abs=1e-4)
    assert compiled_keys == eager_keys  # compiled in place: checkpoints keep the eager names
