"""``forgery-convert official=mtse|mat input=<official state_dict> output=<checkpoint>``.

Converts the weights of the papers' official code (:mod:`forgery.models.official`) into a forgery checkpoint
(``state_dict`` + the ``forgery`` entry with the resolved model/loss/augmentation config) that
``forgery-eval``, ``forgery-predict`` and ``model.init_from`` accept. The network options are inferred from
the weights; everything else is the default recipe of ``conf/official/<official>.yaml``. MAT's RIL centers
(and center momentum) go into the loss's buffers. An unreadable input or weights of the other model stop
with one error line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from forgery.cli import hydra_app
from forgery.errors import ConfigError
from forgery.utils.io import atomic_path
from forgery.utils.run import extras

if TYPE_CHECKING:
    import torch

    from forgery.modules.base import ForgeryModule

# torch and the models are imported inside the functions: --help and --cfg job need neither

__all__ = ["build_converted", "convert", "main"]

log = logging.getLogger(__name__)


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def build_converted(
    kind: str,
    state: dict[str, torch.Tensor],
    model: Any,
    loss: Any,
    augmentation: Any = None,
    backbone: str | None = None,
) -> ForgeryModule:
    """The LightningModule of ``model``/``loss``/``augmentation`` holding the official weights ``state``.

    The net options of ``model`` are replaced by those the weights imply; for MAT the loss is sized to the
    RIL features and its centers (and momentum alpha) are the official ones.
    """
    from forgery.models.official import (
        OFFICIAL_KINDS,
        OfficialWeightsError,
        mat_from_official,
        mtse_from_official,
        mtse_options,
    )
    from forgery.modules import build_module

    if kind not in OFFICIAL_KINDS:
        raise OfficialWeightsError(f"official must be one of {list(OFFICIAL_KINDS)}, got {kind!r}")
    model_cfg, loss_cfg, aug_cfg = _plain(model), _plain(loss), _plain(augmentation)
    if kind == "mtse":
        net = mtse_from_official(state)
        model_cfg["net"].update(mtse_options(state))
        module = build_module(model_cfg, loss_cfg, aug_cfg)
        module.net.load_state_dict(net.state_dict())
        return module

    converted = mat_from_official(state, backbone=backbone)
    model_cfg["net"].update(converted.options, pretrained=False, weights_path=None, mode="mat")
    model_cfg["init_from"] = None
    loss_cfg.update(num_attentions=converted.net.num_attentions, ril_features=converted.net.ril_channels)
    module = build_module(model_cfg, loss_cfg, aug_cfg)
    module.net.load_state_dict(converted.net.state_dict())
    ril = getattr(module.loss, "ril", None)
    if ril is not None and converted.ril_centers is not None:
        ril.centers.copy_(converted.ril_centers)
        if converted.ril_alpha is not None:
            ril.alpha.copy_(converted.ril_alpha)
        margins = tuple(round(m, 6) for m in ril.inner_margins.tolist())
        if converted.inner_margins and tuple(round(m, 6) for m in converted.inner_margins) != margins:
            log.warning(
                "the official RIL inner margins %s differ from the loss config's %s (training only)",
                converted.inner_margins,
                margins,
            )
    return module


def convert(cfg: DictConfig) -> Path:
    """Reads ``cfg.input``, writes the checkpoint ``cfg.output`` (atomically); returns its path."""
    import torch

    from forgery.models.official import OfficialWeightsError, read_official

    kind = cfg.get("official_model")
    if kind is None:
        raise ConfigError("official=mtse or official=mat is required (which paper's weights input holds)")
    source = Path(cfg.input)
    output = Path(cfg.output)
    if output.resolve() == source.resolve():
        raise OfficialWeightsError(f"output {output} would overwrite the input")
    state = read_official(source)
    module = build_converted(kind, state, cfg.model, cfg.loss, cfg.get("augmentation"), cfg.get("backbone"))
    ckpt: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    ckpt["converted_from"] = {"official": kind, "input": str(source)}
    with atomic_path(output) as tmp:
        torch.save(ckpt, tmp)
    net = module.build_config["model"]["net"]
    log.info(
        "converted official %s weights %s (%d tensors) -> %s (%s)",
        kind,
        source,
        len(state),
        output,
        ", ".join(f"{k}={v}" for k, v in net.items() if k != "_target_"),
    )
    return output


@hydra_app("convert", prog="forgery-convert")
def main(cfg: DictConfig) -> None:
    """Thin Hydra wrapper around :func:`convert` (bad weights: one error line, exit 2)."""
    extras(cfg)
    path = convert(cfg)
    print(f"forgery-convert: checkpoint written to {path}", flush=True)


if __name__ == "__main__":
    main()
