"""Weights of the papers' official code, loaded into forgery's networks.

* MTSE-Net: the ``state_dict`` of the official ``Movenet7f4attention_adaption.Movenet`` (keys
  ``conv11ada.0.weight``, ``deconv22b.1.running_var``, ...). The official release is a pickled whole model
  (``.pkl``); export its ``state_dict`` in the official environment first (see the README).
* MAT: the ``state_dict`` of the official ``models/MAT.py`` ``MAT`` on a lukemelas-style EfficientNet
  b0..b7 (keys ``net._blocks.N...``, ``attentions.*``, ``texture_enhance.*``, ``projection_local.*``,
  ``project_final.*``, ``ensemble_classifier_fc.*``, ``auxiliary_loss.*``), or the official training
  checkpoint dict holding it under ``state_dict``. The backbone becomes timm's ``tf_efficientnet_b*`` ('same'
  padding, as official; exact at input sizes divisible by 32, see :mod:`forgery.models.mat`). The RIL
  feature centers live in forgery's loss, so :func:`mat_from_official` returns them beside the network.

Every official key is mapped explicitly by name; a key without a counterpart, a counterpart of another
shape, or a network tensor left without an official value raises :class:`OfficialWeightsError` naming the
first such key. Keys the official forward never uses are skipped by name (MTSE ``deconv44ada.*``,
EfficientNet ``_fc.*``).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from forgery.errors import OfficialWeightsError
from forgery.models.mat import MAT
from forgery.models.mtse_net import MTSENet

__all__ = [
    "OFFICIAL_KINDS",
    "OfficialMAT",
    "OfficialWeightsError",
    "detect_official",
    "map_official_keys",
    "mat_from_official",
    "mat_module_map",
    "mat_options",
    "mtse_from_official",
    "mtse_module_map",
    "mtse_options",
    "read_official",
]

OFFICIAL_KINDS = ("mtse", "mat")

# official keys never used by the official forward: skipped by name
MTSE_UNUSED = ("deconv44ada.",)
MAT_UNUSED = ("net._fc.",)
# official MAT keys that are not network weights: checked or returned beside the network
MAT_SPECIAL = (
    "attentions.mask",
    "auxiliary_loss.feature_centers",
    "auxiliary_loss.alpha",
    "auxiliary_loss.inner_margin",
)

# lukemelas EfficientNet b0..b7: (number of blocks, head conv width) -> variant
_EFFICIENTNETS = {
    (16, 1280): "b0",
    (23, 1280): "b1",
    (23, 1408): "b2",
    (26, 1536): "b3",
    (32, 1792): "b4",
    (39, 2048): "b5",
    (45, 2304): "b6",
    (55, 2560): "b7",
}


def read_official(path: str | Path) -> dict[str, Tensor]:
    """Reads an official ``state_dict`` file (.pth/.pt) with ``weights_only=True``.

    Accepts a plain state dict or a checkpoint dict holding one under ``state_dict`` (the official MAT
    training checkpoints); a ``module.`` prefix (DataParallel) is removed.

    Raises:
        FileNotFoundError: no such file.
        OfficialWeightsError: not safely loadable (a pickled model), or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official weights not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise OfficialWeightsError(
                f"{path}: holds a pickled object ({found.group(1)}), not a state_dict; a pickled whole model "
                "such as the official MTSE .pkl must first be exported in the official environment: "
                "torch.save(torch.load('x.pkl', map_location='cpu').state_dict(), 'x.pth')"
            ) from err
        raise OfficialWeightsError(
            f"{path}: not a readable torch file (corrupt, truncated or another format): "
            f"{_last_line(str(err))}"
        ) from err
    return official_state_dict(obj, str(path))


def _last_line(message: str) -> str:
    """The informative part of a torch.load error (its first line is often a generic preamble)."""
    text = " ".join(message.split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    else:
        text = text.split(". ", 1)[0]
    return text.strip()[:200]


def official_state_dict(obj: Any, source: str = "input") -> dict[str, Tensor]:
    """A state dict from a loaded object: itself, or its ``state_dict`` entry; ``module.`` prefix removed."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise OfficialWeightsError(
            f"{source}: holds a {type(obj).__name__}{' (empty)' if isinstance(obj, Mapping) else ''}, not a "
            "state_dict (a dict of tensors, or a checkpoint dict with one under 'state_dict')"
        )
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if bad is not None:
        raise OfficialWeightsError(
            f"{source}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor: not a state_dict"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def detect_official(state: Mapping[str, Tensor]) -> str | None:
    """``"mtse"`` or ``"mat"`` from the keys of an official state dict, None when it is neither."""
    if "conv1.0.weight" in state and "conv55.0.weight" in state:
        return "mtse"
    if "attentions.conv2.weight" in state and any(k.startswith("net.") for k in state):
        return "mat"
    return None


def _check_kind(state: Mapping[str, Tensor], kind: str) -> None:
    found = detect_official(state)
    if found == kind:
        return
    names = {"mtse": "MTSE-Net", "mat": "MAT"}
    what = f"official {names[found]} weights" if found else "no official MTSE-Net or MAT weights"
    hint = f" (use official={found})" if found else ""
    raise OfficialWeightsError(
        f"expected official {names[kind]} weights, but the state_dict holds {what}{hint}; "
        f"first keys: {list(state)[:3]}"
    )


def map_official_keys(
    keys: Iterable[str], module_map: Mapping[str, str], skip: Iterable[str] = ()
) -> dict[str, str]:
    """{official key: forgery key} through an official-module -> forgery-module table.

    Keys starting with one of ``skip`` are left out. Raises :class:`OfficialWeightsError` for the first key
    whose module is not in the table.
    """
    skip = tuple(skip)
    out: dict[str, str] = {}
    for key in keys:
        if key.startswith(skip) or key in skip:
            continue
        module, _, name = key.rpartition(".")
        if module not in module_map:
            raise OfficialWeightsError(f"official key {key!r} has no counterpart in forgery (unmapped)")
        out[key] = f"{module_map[module]}.{name}"
    return out


def _load_mapped(
    net: nn.Module, state: Mapping[str, Tensor], module_map: Mapping[str, str], skip: Iterable[str]
) -> None:
    """Copies ``state`` into ``net`` through ``module_map``: every shape checked, every net tensor covered."""
    key_map = map_official_keys(state, module_map, skip)
    own = net.state_dict()
    what = type(net).__name__
    mapped: dict[str, Tensor] = {}
    for key, target in key_map.items():
        if target not in own:
            raise OfficialWeightsError(f"official key {key!r} maps to {target!r}, which {what} does not have")
        if tuple(own[target].shape) != tuple(state[key].shape):
            raise OfficialWeightsError(
                f"official key {key!r} has shape {tuple(state[key].shape)}, but {what} {target!r} has "
                f"{tuple(own[target].shape)}"
            )
        mapped[target] = state[key]
    missing = [k for k in own if k not in mapped]
    if missing:
        inverse = {ours: official for official, ours in module_map.items()}
        module, _, name = missing[0].rpartition(".")
        official = f" (official {inverse[module] + '.' + name!r})" if module in inverse else ""
        raise OfficialWeightsError(
            f"the official state_dict lacks {len(missing)} tensor(s) of {what}; "
            f"first: {missing[0]!r}{official}"
        )
    net.load_state_dict(mapped, strict=True)


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise OfficialWeightsError(f"the official state_dict has no {key!r}")
    return tuple(state[key].shape)


# ----------------------------------------------------------------------------------------------- MTSE-Net


def mtse_module_map() -> dict[str, str]:
    """Official ``Movenet`` module path -> :class:`MTSENet` module path (official level digits 1..4)."""
    table: dict[str, str] = {}

    def cbr(official: str, ours: str) -> None:  # Sequential(conv, BN, ReLU) on both sides
        table[f"{official}.0"] = f"{ours}.0"
        table[f"{official}.1"] = f"{ours}.1"

    for k in range(1, 5):
        i, kk = k - 1, f"{k}{k}"
        cbr(f"conv{k}", f"mask_enc.{i}")
        cbr(f"conv{k}b", f"mask_down.{i}")
        table[f"conv{k}c"] = f"low_level.{i}"
        cbr(f"conv{kk}", f"edge_enc.{i}")
        cbr(f"conv{kk}b", f"edge_down.{i}")
        if k == 1:
            cbr("conv11ada", "fal.0.adapt")  # the only FAL with a BatchNorm
        else:
            table[f"conv{kk}ada.0"] = f"fal.{i}.adapt.0"
        table[f"deconv{k}.1"] = f"mask_up.{i}.proj"  # deconvK = Sequential(Upsample, conv1x1)
        table[f"att{k}.fc.0"] = f"seam.{i}.fc1"
        table[f"att{k}.fc.2"] = f"seam.{i}.fc2"
        cbr(f"deconv{k}b", f"fuse.{i}")
        table[f"deconv{kk}.1"] = f"edge_up.{i}.proj"
        cbr(f"deconv{kk}b", f"edge_dec.{i}")
        if k < 4:  # deconv44ada is never called by the official forward
            table[f"deconv{kk}ada.0"] = f"edge_dec_fal.{i}.adapt.0"
    cbr("conv5", "mask_enc.4")
    cbr("conv55", "edge_enc.4")
    table["conv55ada.0"] = "bottleneck_fal.adapt.0"
    table["conv_end"] = "mask_head"
    table["conv_end_label_edge"] = "mask_edge_head"
    table["conv_end_img_edge"] = "image_edge_head"
    return table


def mtse_options(state: Mapping[str, Tensor]) -> dict[str, int]:
    """:class:`MTSENet` arguments matching an official state dict (width, input channels, SEAM reduction)."""
    width, in_chans = _shape(state, "conv1.0.weight")[:2]
    hidden, channels = _shape(state, "att1.fc.0.weight")
    return {
        "in_chans": int(in_chans),
        "width": int(width),
        "se_reduction": int(channels // hidden),
        "num_classes": int(_shape(state, "conv_end.weight")[0]),
    }


def mtse_from_official(state_dict: Mapping[str, Tensor]) -> MTSENet:
    """An :class:`MTSENet` holding the official MTSE-Net weights (raises :class:`OfficialWeightsError`)."""
    state = official_state_dict(state_dict)
    _check_kind(state, "mtse")
    net = MTSENet(**mtse_options(state))
    _load_mapped(net, state, mtse_module_map(), MTSE_UNUSED)
    return net


# ----------------------------------------------------------------------------------------------------- MAT


@dataclass
class OfficialMAT:
    """The official MAT weights in forgery's form.

    Attributes:
        net: the :class:`MAT` network.
        options: the MAT arguments inferred from the weights (backbone, M, texture, taps, widths, border).
        ril_centers: (M, C) RIL feature centers (official ``auxiliary_loss.feature_centers``), for
            ``RegionalIndependenceLoss.centers``.
        ril_alpha: the center momentum (official ``auxiliary_loss.alpha``, decayed per epoch), or None.
        inner_margins: the official RIL (real, fake) inner margins, or None.
    """

    net: MAT
    options: dict[str, Any] = field(default_factory=dict)
    ril_centers: Tensor | None = None
    ril_alpha: Tensor | None = None
    inner_margins: tuple[float, float] | None = None


def _official_blocks(state: Mapping[str, Tensor]) -> int:
    ids = {int(k.split(".")[2]) for k in state if k.startswith("net._blocks.")}
    if not ids or ids != set(range(len(ids))):
        raise OfficialWeightsError(
            f"the official MAT state_dict has no consecutive EfficientNet blocks net._blocks.0..N "
            f"(found {sorted(ids)[:5]}...)"
        )
    return len(ids)


def mat_options(state: Mapping[str, Tensor], backbone: str | None = None) -> dict[str, Any]:
    """:class:`MAT` arguments matching an official state dict (the taps' strides are left to the caller).

    ``backbone`` None infers timm's ``tf_efficientnet_b<n>`` from the number of blocks and the head width.
    """
    if backbone is None:
        signature = (_official_blocks(state), _shape(state, "net._conv_head.weight")[0])
        if signature not in _EFFICIENTNETS:
            raise OfficialWeightsError(
                f"the official backbone ({signature[0]} blocks, head width {signature[1]}) is no "
                f"EfficientNet b0..b7"
            )
        backbone = f"tf_efficientnet_{_EFFICIENTNETS[signature]}"
    mask = state.get("attentions.mask")
    border = 2
    if mask is not None:
        rows = (mask.reshape(mask.shape[-2:]) != 0).any(dim=1).tolist()
        border = rows.index(True) if True in rows else 0
    return {
        "backbone": backbone,
        "num_attentions": int(_shape(state, "attentions.conv2.weight")[0]),
        "texture": "v2" if "texture_enhance.conv_extract.weight" in state else "v1",
        "mid_dims": int(_shape(state, "projection_local.0.weight")[0]),
        "num_classes": int(_shape(state, "ensemble_classifier_fc.2.weight")[0]),
        "border": border,
    }


def _timm_blocks(state: Mapping[str, Tensor], net: MAT) -> list[str]:
    """The backbone's block paths in order, as many as the official ``net._blocks``."""
    blocks = [
        f"backbone.blocks.{s}.{i}" for s, stage in enumerate(net.backbone.blocks) for i in range(len(stage))
    ]
    n = _official_blocks(state)
    if n != len(blocks):
        raise OfficialWeightsError(
            f"the official backbone has {n} blocks, timm's {net.backbone.default_cfg.get('architecture')} "
            f"{len(blocks)}: pass the matching backbone"
        )
    return blocks


def mat_module_map(state: Mapping[str, Tensor], net: MAT) -> dict[str, str]:
    """Official MAT module path -> :class:`MAT` module path, for the blocks present in ``state``."""
    table = {
        "net._conv_stem": "backbone.conv_stem",
        "net._bn0": "backbone.bn1",
        "net._conv_head": "backbone.conv_head",
        "net._bn1": "backbone.bn2",
        "attentions.conv_extract": "attention.conv_extract",
        "attentions.bn1": "attention.bn1",
        "attentions.conv2": "attention.conv2",
        "attentions.bn2": "attention.bn2",
        "projection_local.0": "projection_local.0",
        "projection_local.2": "projection_local.2",
        "project_final": "project_final.0",
        "ensemble_classifier_fc.0": "classifier.0",
        "ensemble_classifier_fc.2": "classifier.2",
    }
    for name, _ in net.texture.named_children():
        table[f"texture_enhance.{name}"] = f"texture.{name}"
    blocks = _timm_blocks(state, net)
    expanded = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_se_reduce": "se.conv_reduce",
        "_se_expand": "se.conv_expand",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    depthwise = {  # expand ratio 1: no expansion conv, timm's DepthwiseSeparableConv
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn1",
        "_se_reduce": "se.conv_reduce",
        "_se_expand": "se.conv_expand",
        "_project_conv": "conv_pw",
        "_bn2": "bn2",
    }
    for j, ours in enumerate(blocks):
        names = expanded if f"net._blocks.{j}._expand_conv.weight" in state else depthwise
        for official, timm_name in names.items():
            table[f"net._blocks.{j}.{official}"] = f"{ours}.{timm_name}"
    return table


def _tap_strides(net: MAT, shallow: int, attention: int) -> tuple[int, int]:
    """Strides of the backbone taps with the official feature / attention layers' channel counts."""
    info = list(net.backbone.feature_info)
    strides = []
    for what, channels in (("feature", shallow), ("attention", attention)):
        found = [int(i["reduction"]) for i in info if int(i["num_chs"]) == channels]
        if not found:
            taps = [(int(i["num_chs"]), int(i["reduction"])) for i in info]
            raise OfficialWeightsError(
                f"the official {what} layer has {channels} channels; MAT taps the ends of stages, "
                f"(channels, stride): {taps}"
            )
        strides.append(found[-1])
    return strides[0], strides[1]


def mat_from_official(
    state_dict: Mapping[str, Tensor], backbone: str | None = None, **net_kwargs: Any
) -> OfficialMAT:
    """The official MAT weights as a :class:`MAT` plus its RIL centers (raises :class:`OfficialWeightsError`).

    Args:
        state_dict: official MAT ``state_dict`` (or the official checkpoint dict holding it).
        backbone: timm backbone name; None infers ``tf_efficientnet_b<n>`` from the shapes.
        net_kwargs: further :class:`MAT` arguments (dropouts, ``drop_path_rate``, BatchNorm options).
    """
    state = official_state_dict(state_dict)
    _check_kind(state, "mat")
    options = mat_options(state, backbone)
    fixed = sorted(set(net_kwargs) & (set(options) | {"shallow_stride", "attention_stride"}))
    if fixed:
        raise OfficialWeightsError(f"mat_from_official: {fixed} are set by the official weights")
    v2 = options["texture"] == "v2"
    shallow = _shape(state, "texture_enhance.conv_extract.weight" if v2 else "texture_enhance.conv0.weight")[
        1
    ]
    attention = _shape(state, "attentions.conv_extract.weight")[1]
    net = MAT(**options, **net_kwargs)
    _timm_blocks(state, net)
    strides = _tap_strides(net, shallow, attention)
    options.update(shallow_stride=strides[0], attention_stride=strides[1])
    if (net.shallow_channels, net.attention_channels) != (shallow, attention):
        net = MAT(**options, **net_kwargs)

    if "attentions.mask" in state:
        official = state["attentions.mask"].float()
        ours = net.attention.border_mask
        if tuple(official.shape) != tuple(ours.shape) or not torch.equal(official, ours):
            raise OfficialWeightsError(
                f"official key 'attentions.mask' ({tuple(official.shape)}) is not MAT's border mask "
                f"(border {options['border']} on a {tuple(ours.shape[-2:])} grid)"
            )
    _load_mapped(net, state, mat_module_map(state, net), MAT_UNUSED + MAT_SPECIAL)

    centers = state.get("auxiliary_loss.feature_centers")
    if centers is not None and tuple(centers.shape) != (net.num_attentions, net.ril_channels):
        raise OfficialWeightsError(
            f"official key 'auxiliary_loss.feature_centers' has shape {tuple(centers.shape)}, but MAT's RIL "
            f"features are {(net.num_attentions, net.ril_channels)}"
        )
    margins = state.get("auxiliary_loss.inner_margin")
    return OfficialMAT(
        net=net,
        options=options,
        ril_centers=None if centers is None else centers.float().clone(),
        ril_alpha=None
        if "auxiliary_loss.alpha" not in state
        else state["auxiliary_loss.alpha"].float().clone(),
        inner_margins=None if margins is None else tuple(float(m) for m in margins.tolist()),
    )
