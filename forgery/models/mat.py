"""MAT: Multi-attentional Deepfake Detection (Zhao et al., CVPR 2021).

Implements the network of the paper following the final recipe of the official code
(github.com/yoctta/multiple-attention): a timm CNN backbone tapped at the end of its stride-4 stage (shallow
texture features), its stride-16 stage (attention features) and its last features after the head conv (global
features); M positive attention maps with a zeroed border; texture enhancement (official v2 with attention
gating and per-map grouped convolutions, or the paper's v1); bilinear attention pooling (BAP) into a (B, M, C)
textural feature matrix; per-sample head dropout over the M maps; and a local + global ensemble classifier.
The model also computes the V features of the regional independence loss (see ``forgery.losses.mat``).

``mode="baseline"`` is the stage-1 backbone-only classifier of the two-stage recipe; it shares the backbone's
parameter names with the full model so that stage 2 initialises from it through :meth:`MAT.load_matching`.

Defaults (``tf_efficientnet_b4``, 380x380 inputs normalised with mean = std = 0.5): shallow tap 32 ch at
95x95, attention tap 160 ch at 24x24, final features 1792 ch at 12x12; 18,822,482 parameters in MAT mode
(17,548,616 in the backbone), 17,552,202 in baseline mode.

Backbone recipe as the official EfficientNet (lukemelas-style): BatchNorm momentum 0.01 in PyTorch's
convention (TF's 0.99) and eps 1e-3 (``bn_momentum``, ``bn_eps``; the head's BatchNorms keep PyTorch's
defaults, as official), stochastic depth 0.2 (``drop_path_rate``). timm's ``drop_path`` is the official
``drop_connect``: per sample, on the residual branch of the blocks with a skip, kept samples scaled by
1/(1-p), the rate rising linearly with the block index (rate * i / n_blocks); only the random draws differ.
The 'same' padding of timm's ``tf_`` models is dynamic (computed from each input), whereas the official
code pads statically for the model's nominal size at every layer; both agree whenever every stride-2 conv
sees an even input, i.e. at sizes divisible by 32, where official weights (``forgery.models.official``) give
the official numbers exactly. Elsewhere they differ: at 380 the official B4 maps are 47/23/11 wide, timm's
(TF's 'SAME') 48/24/12.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.errors import ConfigError

__all__ = [
    "MAT",
    "MAT_INPUT_SIZE",
    "MAT_MEAN",
    "MAT_STD",
    "AttentionModule",
    "BilinearAttentionPooling",
    "HeadDropout",
    "MATOutput",
    "TextureEnhanceV1",
    "TextureEnhanceV2",
    "standardize_spatial",
]

log = logging.getLogger(__name__)

MAT_INPUT_SIZE = 380
MAT_MEAN = (0.5, 0.5, 0.5)
MAT_STD = (0.5, 0.5, 0.5)

_MASK_SIZE = 24  # the official border mask is defined at the B4 attention size and resized from there


@dataclass
class MATOutput:
    """Output of :class:`MAT`; everything but ``logits`` is None in baseline mode.

    Attributes:
        logits: (B, num_classes); class 0 = real, 1 = fake.
        attention_maps: (B, M, h, w) positive maps before head dropout (for AGDA and pictures).
        feature_matrix: (B, M, C) L2-normalised textural feature matrix before the head-dropout mask.
        ril_features: (B, M, C_d) the V features of the regional independence loss.
        dropout_mask: (B, M) head-dropout mask (0 or 1/(1-p) in training, ones in eval).
    """

    logits: Tensor
    attention_maps: Tensor | None = None
    feature_matrix: Tensor | None = None
    ril_features: Tensor | None = None
    dropout_mask: Tensor | None = None


def _channels_last(x: Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last (and not also plainly contiguous, e.g. C = 1)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def standardize_spatial(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise each channel of (B, C, H, W) over space: mean 0, std 1 (unbiased std, as official).

    Float32 output: eps must not vanish for constant (e.g. dead-ReLU) channels.
    """
    x = x.float()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / (x.std(dim=(2, 3), keepdim=True) + eps)


class AttentionModule(nn.Module):
    """M positive attention maps from the stride-16 features, with a zeroed border frame.

    3x3 conv (C->C) + BN + ReLU, 1x1 conv (C->M, no bias) + BN, ELU + 1, times a border mask that zeroes a
    ``border``-pixel frame on a 24x24 grid, nearest-resized to other map sizes.
    """

    def __init__(self, in_channels: int, num_attentions: int, border: int = 2) -> None:
        super().__init__()
        if not 0 <= 2 * border < _MASK_SIZE:
            raise ConfigError(f"AttentionModule: border must be in [0, {_MASK_SIZE // 2}), got {border}")
        self.conv_extract = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, num_attentions, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_attentions)
        mask = torch.zeros(1, 1, _MASK_SIZE, _MASK_SIZE)
        mask[..., border : _MASK_SIZE - border, border : _MASK_SIZE - border] = 1
        self.register_buffer("border_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) features -> (B, M, h, w) attention maps >= 0."""
        x = F.relu(self.bn1(self.conv_extract(x)))
        x = F.elu(self.bn2(self.conv2(x))) + 1
        mask = F.interpolate(self.border_mask, size=x.shape[-2:], mode="nearest")
        return x * mask.to(x.dtype)


class TextureEnhanceV1(nn.Module):
    """The paper's texture enhancement: residual of local average pooling, then a 3-layer dense block.

    Output (B, 4C, H, W) (the official v1 keeps the dense block's 4C channels) and pooled D (B, C, h, w).
    """

    def __init__(self, channels: int, num_attentions: int) -> None:
        super().__init__()
        c = channels
        self.out_channels = 4 * c
        self.pooled_channels = c
        self.conv0 = nn.Conv2d(c, c, 1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * c)
        self.conv2 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(3 * c)
        self.conv3 = nn.Conv2d(3 * c, c, 3, padding=1)
        self.bn4 = nn.BatchNorm2d(4 * c)
        self.conv_last = nn.Conv2d(4 * c, 4 * c, 1)
        self.bn_last = nn.BatchNorm2d(4 * c)

    def forward(
        self, features: Tensor, attention_maps: Tensor, upsampled: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) shallow features, (B, M, h, w) maps (only their size used) -> ((B, 4C, H, W), D).

        ``upsampled`` is accepted for a common signature with v2 and unused.
        """
        pooled = F.adaptive_avg_pool2d(features, attention_maps.shape[-2:])
        x = features - F.interpolate(pooled, size=features.shape[-2:], mode="nearest")
        x0 = self.conv0(x)
        x1 = torch.cat([x0, self.conv1(F.relu(self.bn1(x0)))], dim=1)
        x2 = torch.cat([x1, self.conv2(F.relu(self.bn2(x1)))], dim=1)
        x3 = torch.cat([x2, self.conv3(F.relu(self.bn3(x2)))], dim=1)
        return self.bn_last(self.conv_last(F.relu(self.bn4(x3)))), pooled


class TextureEnhanceV2(nn.Module):
    """Official v2 texture enhancement: per-map gated residual and grouped (groups = M) dense block.

    3x3 conv; D = local average pooling to the attention size; residual F - nearest-upsample(D), gated per map
    by tanh(bilinear-upsampled detached attention); 5x5 grouped conv, 3-layer dense block (BN-ReLU-3x3 conv,
    growth C, concatenation inside each map's group), BN-ReLU-1x1 conv (4C->C per group), BN, ReLU.
    """

    def __init__(self, channels: int, num_attentions: int) -> None:
        super().__init__()
        c, m = channels, num_attentions
        self.num_attentions = m
        self.out_channels = c
        self.pooled_channels = c
        self.conv_extract = nn.Conv2d(c, c, 3, padding=1)
        self.conv0 = nn.Conv2d(m * c, m * c, 5, padding=2, groups=m)
        self.bn1 = nn.BatchNorm2d(m * c)
        self.conv1 = nn.Conv2d(m * c, m * c, 3, padding=1, groups=m)
        self.bn2 = nn.BatchNorm2d(2 * m * c)
        self.conv2 = nn.Conv2d(2 * m * c, m * c, 3, padding=1, groups=m)
        self.bn3 = nn.BatchNorm2d(3 * m * c)
        self.conv3 = nn.Conv2d(3 * m * c, m * c, 3, padding=1, groups=m)
        self.bn4 = nn.BatchNorm2d(4 * m * c)
        self.conv_last = nn.Conv2d(4 * m * c, m * c, 1, groups=m)
        self.bn_last = nn.BatchNorm2d(m * c)

    def _cat(self, a: Tensor, b: Tensor) -> Tensor:
        """Concatenate (B, M*Ca, H, W) and (B, M*Cb, H, W) channel-wise within each map's group.

        Channels-last inputs are concatenated in their (B, H, W, C) memory order, so the result stays
        channels-last with a single copy (the 5-D detour of the contiguous path would flip the layout).
        """
        B, _, H, W = a.shape
        m = self.num_attentions
        if _channels_last(a):
            a_, b_ = (t.permute(0, 2, 3, 1).reshape(B, H, W, m, -1) for t in (a, b))
            return torch.cat([a_, b_], dim=4).reshape(B, H, W, -1).permute(0, 3, 1, 2)
        return torch.cat([a.reshape(B, m, -1, H, W), b.reshape(B, m, -1, H, W)], dim=2).reshape(B, -1, H, W)

    def _gated(self, x: Tensor, gate: Tensor) -> Tensor:
        """(B, C, H, W) features times each of the (B, M, H, W) gates -> (B, M*C, H, W), map-major."""
        B, C, H, W = x.shape
        if _channels_last(x):
            prod = gate.permute(0, 2, 3, 1).unsqueeze(-1) * x.permute(0, 2, 3, 1).unsqueeze(-2)
            return prod.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        return (x.unsqueeze(1) * gate.unsqueeze(2)).reshape(B, -1, H, W)

    def forward(
        self, features: Tensor, attention_maps: Tensor, upsampled: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) shallow features, (B, M, h, w) maps -> ((B, M, C, H, W), D (B, C, h, w)).

        ``upsampled``: the maps already bilinearly resized (align_corners=True) to (H, W), when the caller
        has them (MAT shares them with its attention pooling); computed here otherwise.
        """
        B, C, H, W = features.shape
        x = self.conv_extract(features)
        pooled = F.adaptive_avg_pool2d(x, attention_maps.shape[-2:])
        if pooled.shape[2] < H:
            x = x - F.interpolate(pooled, size=(H, W), mode="nearest")
        if upsampled is None:
            upsampled = F.interpolate(attention_maps, size=(H, W), mode="bilinear", align_corners=True)
        gate = torch.tanh(upsampled.detach()).to(x.dtype)
        x0 = self.conv0(self._gated(x, gate))
        x1 = self._cat(x0, self.conv1(F.relu(self.bn1(x0))))
        x2 = self._cat(x1, self.conv2(F.relu(self.bn2(x1))))
        x3 = self._cat(x2, self.conv3(F.relu(self.bn3(x2))))
        x = F.relu(self.bn_last(self.conv_last(F.relu(self.bn4(x3)))))
        return x.reshape(B, self.num_attentions, C, H, W), pooled


class BilinearAttentionPooling(nn.Module):
    """Bilinear attention pooling: per map, the spatial sum of attention times features.

    Attention is bilinearly resized (align_corners=True) to the feature size. ``norm="l2"`` L2-normalises each
    map's vector (the textural feature matrix); ``norm="mean"`` divides by the map's attention mass, i.e. an
    attention-weighted average (the global branch; 1e-8 is added to the maps as the official code does).
    Computed in float32 even under autocast: 1e-8 and the normalisation eps vanish in float16.
    """

    def forward(self, features: Tensor, attentions: Tensor, norm: str = "l2") -> Tensor:
        """(B, C, H, W) or per-map (B, M, C, H, W) features, (B, M, h, w) maps -> float32 (B, M, C)."""
        with torch.autocast(features.device.type, enabled=False):
            return self._pool(features.float(), attentions.float(), norm)

    def _pool(self, features: Tensor, attentions: Tensor, norm: str) -> Tensor:
        if attentions.shape[-2:] != features.shape[-2:]:
            attentions = F.interpolate(
                attentions, size=features.shape[-2:], mode="bilinear", align_corners=True
            )
        if norm == "mean":
            attentions = attentions + 1e-8
        if features.dim() == 4:
            matrix = torch.einsum("bmhw,bchw->bmc", attentions, features)
        elif features.dim() == 5:
            matrix = torch.einsum("bmhw,bmchw->bmc", attentions, features)
        else:
            raise ValueError(f"BilinearAttentionPooling: features must be 4-D or 5-D, got {features.shape}")
        if norm == "l2":
            return F.normalize(matrix, p=2, dim=-1)
        if norm == "mean":
            return matrix / attentions.sum(dim=(2, 3)).unsqueeze(-1)
        if norm == "none":
            return matrix
        raise ConfigError(f"BilinearAttentionPooling: norm must be 'l2', 'mean' or 'none', got {norm!r}")


class HeadDropout(nn.Module):
    """Drop whole attention maps per sample: Bernoulli mask over (B, M), kept maps scaled by 1/(1-p).

    An explicit mask rather than ``nn.Dropout2d`` on a 3-D tensor, whose semantics changed across versions.
    Identity (mask of ones) in eval mode or with p = 0.
    """

    def __init__(self, p: float = 0.25) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"HeadDropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, M, ...) -> (x times the mask broadcast over trailing dims, mask (B, M))."""
        B, M = x.shape[:2]
        if not self.training or self.p == 0.0:
            mask = torch.ones(B, M, device=x.device, dtype=x.dtype)
        else:
            keep = torch.rand(B, M, device=x.device) >= self.p
            mask = keep.to(x.dtype) / (1.0 - self.p)
        return x * mask.view(B, M, *([1] * (x.dim() - 2))), mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _stage_index(feature_info: list[dict], stride: int, backbone: str) -> int:
    """Index of the last feature_info entry with reduction == stride (the end of that stage)."""
    matches = [i for i, info in enumerate(feature_info) if info["reduction"] == stride]
    if not matches:
        strides = sorted({info["reduction"] for info in feature_info})
        raise ValueError(
            f"MAT: backbone {backbone!r} has no stage with stride {stride}; strides are {strides}"
        )
    return matches[-1]


class MAT(nn.Module):
    """Multi-attentional deepfake detector (or, with ``mode="baseline"``, its stage-1 backbone classifier).

    Args:
        backbone: timm model name; any CNN with ``feature_info`` and ``forward_intermediates``.
        pretrained: load backbone weights; requires ``weights_path`` (nothing is ever downloaded).
        weights_path: local backbone state dict in timm naming (e.g. AdvProp ``tf_efficientnet_b4.ap_in1k``).
        num_attentions: M attention maps.
        texture: ``"v2"`` (official, default) or ``"v1"`` (the paper's) texture enhancement.
        shallow_stride: stride of the stage whose end gives the shallow texture features.
        attention_stride: stride of the stage whose end gives the attention features.
        head_dropout: probability p of dropping a whole attention map per sample.
        dropout: dropout before the global projection (and before the baseline classifier).
        mid_dims: width of the classifier's hidden layers.
        num_classes: 2 (0 = real, 1 = fake).
        border: zeroed frame of the attention maps, in pixels of a 24x24 map.
        drop_path_rate: backbone stochastic depth (timm ``drop_path_rate``; official drop-connect 0.2).
        bn_momentum: momentum of every backbone BatchNorm, PyTorch convention (official 0.01 = TF's 0.99);
            None keeps timm's 0.1.
        bn_eps: eps of every backbone BatchNorm (official 1e-3); None keeps the timm model's own.
        mode: ``"mat"`` (full model) or ``"baseline"`` (final features -> GAP -> dropout -> Linear).
    """

    def __init__(
        self,
        *,
        backbone: str = "tf_efficientnet_b4",
        pretrained: bool = False,
        weights_path: str | None = None,
        num_attentions: int = 4,
        texture: str = "v2",
        shallow_stride: int = 4,
        attention_stride: int = 16,
        head_dropout: float = 0.25,
        dropout: float = 0.5,
        mid_dims: int = 256,
        num_classes: int = 2,
        border: int = 2,
        drop_path_rate: float = 0.2,
        bn_momentum: float | None = 0.01,
        bn_eps: float | None = 1e-3,
        mode: str = "mat",
    ) -> None:
        super().__init__()
        if mode not in ("mat", "baseline"):
            raise ConfigError(f"MAT: mode must be 'mat' or 'baseline', got {mode!r}")
        if texture not in ("v1", "v2"):
            raise ConfigError(f"MAT: texture must be 'v1' or 'v2', got {texture!r}")
        if num_attentions < 1:
            raise ConfigError(f"MAT: num_attentions must be >= 1, got {num_attentions}")
        if shallow_stride >= attention_stride:
            raise ConfigError(
                f"MAT: shallow_stride ({shallow_stride}) must be smaller than "
                f"attention_stride ({attention_stride})"
            )
        if pretrained and weights_path is None:
            raise ConfigError(
                "MAT: pretrained=True needs weights_path (a local file); weights are never downloaded"
            )
        self.mode = mode
        self.num_attentions = num_attentions
        self.num_classes = num_classes

        self.backbone = timm.create_model(
            backbone, pretrained=False, num_classes=0, global_pool="", drop_path_rate=drop_path_rate
        )
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if bn_momentum is not None:
                    module.momentum = bn_momentum
                if bn_eps is not None:
                    module.eps = bn_eps
        if not hasattr(self.backbone, "forward_intermediates"):
            raise ConfigError(f"MAT: timm backbone {backbone!r} does not implement forward_intermediates")
        feature_info = list(self.backbone.feature_info)
        self.tap_indices = (
            _stage_index(feature_info, shallow_stride, backbone),
            _stage_index(feature_info, attention_stride, backbone),
        )
        self.shallow_channels = int(feature_info[self.tap_indices[0]]["num_chs"])
        self.attention_channels = int(feature_info[self.tap_indices[1]]["num_chs"])
        self.final_channels = int(self.backbone.num_features)
        if weights_path is not None:
            self.load_backbone_weights(weights_path)

        if mode == "baseline":
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(self.final_channels, num_classes)
            return

        self.attention = AttentionModule(self.attention_channels, num_attentions, border)
        texture_cls = TextureEnhanceV2 if texture == "v2" else TextureEnhanceV1
        self.texture = texture_cls(self.shallow_channels, num_attentions)
        self.texture_channels = self.texture.out_channels
        self.ril_channels = self.texture.pooled_channels
        self.bap = BilinearAttentionPooling()
        self.head_dropout = HeadDropout(head_dropout)
        self.projection_local = nn.Sequential(
            nn.Linear(num_attentions * self.texture_channels, mid_dims),
            nn.Hardswish(),
            nn.Linear(mid_dims, mid_dims),
            nn.Hardswish(),
        )
        self.dropout = nn.Dropout(dropout)
        self.project_final = nn.Sequential(nn.Linear(self.final_channels, mid_dims), nn.Hardswish())
        self.classifier = nn.Sequential(
            nn.Linear(2 * mid_dims, mid_dims), nn.Hardswish(), nn.Linear(mid_dims, num_classes)
        )

    @classmethod
    def backbone_classifier(cls, **kwargs: object) -> MAT:
        """The stage-1 model: ``MAT(mode="baseline", **kwargs)``."""
        return cls(mode="baseline", **kwargs)  # type: ignore[arg-type]

    def convert_sync_batchnorm(self) -> MAT:
        """Switch every BatchNorm to SyncBatchNorm for DDP, in place; returns self.

        Uses timm's converter: torch's (and Lightning's ``sync_batchnorm=True``) turns timm's fused
        ``BatchNormAct2d`` into a plain ``SyncBatchNorm`` whose forward silently skips the activation.
        """
        timm.layers.convert_sync_batchnorm(self)  # replaces children in place (the root is no BatchNorm)
        return self

    def load_backbone_weights(self, path: str | Path) -> None:
        """Load a local timm state dict into the backbone; a full checkpoint's classifier keys are ignored.

        Raises FileNotFoundError for a missing file and ValueError when backbone weights are missing.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MAT: backbone weights file not found: {path}")
        state = timm.models.load_state_dict(str(path))
        result = self.backbone.load_state_dict(state, strict=False)
        classifier = self.backbone.pretrained_cfg.get("classifier", "classifier")
        unexpected = [k for k in result.unexpected_keys if not k.startswith(classifier + ".")]
        ignored = len(result.unexpected_keys) - len(unexpected)
        if result.missing_keys:
            raise ValueError(
                f"MAT: {path} lacks {len(result.missing_keys)} backbone weights "
                f"(first: {result.missing_keys[:5]}); unexpected keys: {unexpected[:5]}"
            )
        if unexpected:
            log.warning("MAT: %s has %d unexpected keys, ignored: %s", path, len(unexpected), unexpected[:10])
        log.info("MAT: loaded backbone weights from %s (%d classifier keys ignored)", path, ignored)

    def load_matching(
        self, state_dict: Mapping[str, Tensor], prefix: str = ""
    ) -> tuple[list[str], list[str]]:
        """Load the entries whose names (after removing ``prefix``) and shapes match this model.

        Used to initialise stage 2 (MAT) from stage 1 (baseline). Returns (loaded, skipped) key lists;
        skipped holds the checkpoint keys that were not loaded (absent here, other prefix or other shape).
        """
        own = self.state_dict()
        matched: dict[str, Tensor] = {}
        skipped: list[str] = []
        for key, value in state_dict.items():
            name = key[len(prefix) :] if key.startswith(prefix) else None
            if name is not None and name in own and own[name].shape == value.shape:
                matched[name] = value
            else:
                skipped.append(key)
        self.load_state_dict(matched, strict=False)
        if skipped:
            log.info("MAT.load_matching: loaded %d tensors, skipped %d", len(matched), len(skipped))
        return list(matched), skipped

    def forward_backbone(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3, H, W) -> shallow (B, C_s, H/4, W/4), attention (B, C_a, H/16, W/16), final (B, C_f, h, w).

        Strides shown are the defaults: the taps end the ``shallow_stride`` and ``attention_stride`` stages.
        """
        final, taps = self.backbone.forward_intermediates(
            images, indices=list(self.tap_indices), intermediates_only=False
        )
        shallow, deep = taps
        if shallow.shape[1] != self.shallow_channels or deep.shape[1] != self.attention_channels:
            raise RuntimeError(
                f"MAT: backbone taps have {shallow.shape[1]}/{deep.shape[1]} channels but feature_info says "
                f"{self.shallow_channels}/{self.attention_channels}"
            )
        return shallow, deep, final

    def forward(self, images: Tensor) -> MATOutput:
        """(B, 3, H, W) images normalised with mean = std = 0.5 -> :class:`MATOutput`."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"MAT: images must be (B, 3, H, W), got {tuple(images.shape)}")
        if self.mode == "baseline":
            final = self.backbone.forward_features(images)
            return MATOutput(logits=self.head(self.dropout(final.mean(dim=(2, 3)))))

        shallow, deep, final = self.forward_backbone(images)
        attention_maps = self.attention(deep)
        # the maps at the shallow size, once: the texture gate and the textural attention pooling share them
        with torch.autocast(images.device.type, enabled=False):
            maps_up = F.interpolate(
                attention_maps.float(), size=shallow.shape[-2:], mode="bilinear", align_corners=True
            )
        texture, pooled = self.texture(shallow, attention_maps, upsampled=maps_up)
        ril_features = self.bap(standardize_spatial(pooled), attention_maps, norm="l2")
        feature_matrix = self.bap(texture, maps_up, norm="l2")
        dropped_maps, mask = self.head_dropout(attention_maps)

        local = (feature_matrix * mask.unsqueeze(-1)).flatten(1)
        local = self.projection_local(local)
        pooled_final = self.bap(final, dropped_maps.sum(dim=1, keepdim=True), norm="mean").squeeze(1)
        global_ = self.project_final(self.dropout(pooled_final))
        logits = self.classifier(torch.cat([local, global_], dim=1))
        return MATOutput(
            logits=logits,
            attention_maps=attention_maps,
            feature_matrix=feature_matrix,
            ril_features=ril_features,
            dropout_mask=mask,
        )
