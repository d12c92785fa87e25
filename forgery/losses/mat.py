"""Losses of MAT (Zhao et al., "Multi-attentional Deepfake Detection", CVPR 2021).

``RegionalIndependenceLoss`` (RIL) keeps per-map feature centers (a buffer, updated from real samples and
averaged across DDP ranks) and pulls each sample's regional features towards them (intra term) while pushing
the centers of different maps apart (inter term). ``AGDAMatchLoss`` ties the RIL features of the
AGDA-augmented pass to those of the clean pass on the maps AGDA did not degrade. ``MATLoss`` combines
1 * CE + 0.5 * RIL + 1 * CE(AGDA pass) + 0.1 * match, as the official code's final recipe.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn

from forgery.errors import ConfigError
from forgery.models.mat import MATOutput

__all__ = ["RIL_VARIANTS", "AGDAMatchLoss", "MATLoss", "RegionalIndependenceLoss"]

# inner margins are [real, fake]; a negative margin asks for a distance of at least |m| (sign trick)
RIL_VARIANTS: dict[str, dict[str, object]] = {
    "official": {
        "inner_margins": (0.2, -0.8),
        "inter_margin": 0.8,
        "per_map": False,
        "real_centers_only": True,
    },
    "paper": {"inner_margins": (0.05, 0.1), "inter_margin": 0.2, "per_map": True, "real_centers_only": False},
}


def _check_labels(labels: Tensor, batch: int, where: str) -> None:
    if labels.dim() != 1 or labels.shape[0] != batch or labels.dtype != torch.long:
        raise ValueError(
            f"{where}: labels must be a (B,) = ({batch},) long tensor, "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class RegionalIndependenceLoss(nn.Module):
    """Regional independence loss with momentum-updated per-map centers.

    Each call computes fresh centers with gradient, c' = c + alpha * mean_B((V - c) * w) with w = [y = real]
    (or 1 for every sample with ``real_centers_only=False``), averaged over the full batch. In training
    with ``update=True`` c' (detached, averaged across DDP ranks) is stored in the ``centers`` buffer. Both
    terms use c': intra = mean relu(d * sign(m_y) - m_y) with d = ||V - c'||_F per sample (or
    ||V_j - c'_j||_2 per map with ``per_map=True``);
    inter = sum_{j<k} relu(m_out - ||c'_j - c'_k||_2) / M / alpha.

    Args:
        num_attentions: M.
        num_features: C of the (B, M, C) features.
        variant: preset of the four options below: ``"official"`` (margins (0.2, -0.8), inter margin 0.8,
            Frobenius norm per sample, centers from real samples) or ``"paper"`` ((0.05, 0.1), 0.2, per-map
            norm, centers from all samples); explicit arguments override the preset.
        alpha: initial center momentum (buffer ``alpha``).
        alpha_decay: factor applied to alpha by :meth:`on_epoch_end`.
        inner_margins: (real, fake) margins.
        inter_margin: m_out.
        per_map: per-map L2 distances instead of one Frobenius distance per sample.
        real_centers_only: update the centers from real samples only.
    """

    def __init__(
        self,
        num_attentions: int = 4,
        num_features: int = 32,
        variant: str = "official",
        *,
        alpha: float = 0.05,
        alpha_decay: float = 0.9,
        inner_margins: tuple[float, float] | None = None,
        inter_margin: float | None = None,
        per_map: bool | None = None,
        real_centers_only: bool | None = None,
    ) -> None:
        super().__init__()
        if variant not in RIL_VARIANTS:
            raise ConfigError(
                f"RegionalIndependenceLoss: variant must be one of {list(RIL_VARIANTS)}, got {variant!r}"
            )
        preset = RIL_VARIANTS[variant]
        inner_margins = preset["inner_margins"] if inner_margins is None else inner_margins  # type: ignore[assignment]
        if len(inner_margins) != 2:  # type: ignore[arg-type]
            raise ConfigError(
                f"RegionalIndependenceLoss: inner_margins must be (real, fake), got {inner_margins}"
            )
        self.inter_margin = float(preset["inter_margin"] if inter_margin is None else inter_margin)  # type: ignore[arg-type]
        self.per_map = bool(preset["per_map"] if per_map is None else per_map)
        self.real_centers_only = bool(
            preset["real_centers_only"] if real_centers_only is None else real_centers_only
        )
        self.alpha_decay = alpha_decay
        self.register_buffer("centers", torch.zeros(num_attentions, num_features))
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        # epochs whose decay has been applied: makes the decay resume-safe wherever a checkpoint is saved
        self.register_buffer("decayed_epochs", torch.tensor(0, dtype=torch.long))
        self.register_buffer(
            "inner_margins", torch.tensor(inner_margins, dtype=torch.float32), persistent=False
        )

    def on_epoch_end(self) -> None:
        """Decay the center momentum: alpha <- alpha * alpha_decay (0.05 -> 0.045 with the defaults)."""
        self.alpha.mul_(self.alpha_decay)
        self.decayed_epochs.add_(1)

    def sync_epoch(self, epoch: int) -> None:
        """Apply the decays of all epochs before ``epoch`` not applied yet (call at each epoch's start).

        Equivalent to calling :meth:`on_epoch_end` after every epoch, but exact after resuming from a
        checkpoint saved before the epoch-end hook ran.
        """
        while int(self.decayed_epochs) < epoch:
            self.on_epoch_end()

    def forward_terms(self, features: Tensor, labels: Tensor, update: bool = True) -> dict[str, Tensor]:
        """(B, M, C) features, (B,) labels (0 = real, 1 = fake) -> {"intra", "inter", "centers" (c')}."""
        if features.dim() != 3 or features.shape[1:] != self.centers.shape:
            raise ValueError(
                f"RegionalIndependenceLoss: features must be (B, {self.centers.shape[0]}, "
                f"{self.centers.shape[1]}), got {tuple(features.shape)}"
            )
        _check_labels(labels, features.shape[0], "RegionalIndependenceLoss")
        V = features.float()
        M = V.shape[1]
        weight = (
            (labels == 0).to(V.dtype) if self.real_centers_only else torch.ones_like(labels, dtype=V.dtype)
        )
        step = ((V - self.centers) * weight.view(-1, 1, 1)).mean(dim=0)
        if self.training and _world_size() > 1:
            # the mean over the GLOBAL batch, differentiably: every rank's loss then uses the centers a
            # single process would compute from the same global batch, and so do the gradients
            step = dist_nn.all_reduce(step) / _world_size()
        centers = self.centers + self.alpha * step
        if self.training and update:
            with torch.no_grad():
                self.centers.copy_(centers.detach())

        margin = self.inner_margins[labels]
        if self.per_map:
            distance = torch.linalg.vector_norm(V - centers, dim=-1)  # (B, M)
            margin = margin.unsqueeze(1)
        else:
            distance = torch.linalg.vector_norm(V - centers, dim=(1, 2))  # (B,)
        intra = F.relu(distance * torch.sign(margin) - margin).mean()

        j, k = torch.triu_indices(M, M, offset=1, device=V.device)
        center_distance = torch.linalg.vector_norm(centers[j] - centers[k], dim=-1)
        inter = F.relu(self.inter_margin - center_distance).sum() / M / self.alpha
        return {"intra": intra, "inter": inter, "centers": centers}

    def forward(self, features: Tensor, labels: Tensor, update: bool = True) -> Tensor:
        """(B, M, C) features, (B,) labels -> scalar intra + inter (updates the centers in training)."""
        terms = self.forward_terms(features, labels, update)
        return terms["intra"] + terms["inter"]

    def extra_repr(self) -> str:
        return (
            f"centers={tuple(self.centers.shape)}, inner_margins={self.inner_margins.tolist()}, "
            f"inter_margin={self.inter_margin}, per_map={self.per_map}, "
            f"real_centers_only={self.real_centers_only}"
        )


class AGDAMatchLoss(nn.Module):
    """Mean over all B x M entries of ||V_agda - V||_2 * (1 - onehot(AGDA's chosen map))."""

    def forward(self, features: Tensor, features_agda: Tensor, selected: Tensor) -> Tensor:
        """(B, M, C) clean and AGDA RIL features, (B,) long chosen map -> scalar."""
        if features.shape != features_agda.shape or features.dim() != 3:
            raise ValueError(
                f"AGDAMatchLoss: features must both be (B, M, C), got {tuple(features.shape)} and "
                f"{tuple(features_agda.shape)}"
            )
        _check_labels(selected, features.shape[0], "AGDAMatchLoss (selected)")
        # not F.one_hot: on CUDA it reads the indices back to check their range (a host-device sync)
        maps = torch.arange(features.shape[1], device=selected.device)
        keep = (selected.unsqueeze(1) != maps).to(torch.float32)
        distance = torch.linalg.vector_norm(features_agda.float() - features.float(), dim=-1)
        return (distance * keep).mean()


class MATLoss(nn.Module):
    """ce_weight * CE + ril_weight * RIL + agda_weight * CE(AGDA pass) + match_weight * match.

    Args:
        num_attentions: M (for the default RIL).
        ril_features: C of the RIL features (``MAT.ril_channels``; 32 for B4).
        ce_weight, ril_weight, agda_weight, match_weight: term weights (1, 0.5, 1, 0.1).
        ril_variant: preset of the default RIL (``"official"`` or ``"paper"``).
        ril: a configured RIL module instead of the default one.
    """

    kind = "faces"  # the task it serves (checked against the model when a run is built)

    def __init__(
        self,
        num_attentions: int = 4,
        ril_features: int = 32,
        *,
        ce_weight: float = 1.0,
        ril_weight: float = 0.5,
        agda_weight: float = 1.0,
        match_weight: float = 0.1,
        ril_variant: str = "official",
        ril: RegionalIndependenceLoss | None = None,
    ) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.ril_weight = ril_weight
        self.agda_weight = agda_weight
        self.match_weight = match_weight
        self.ril = (
            ril if ril is not None else RegionalIndependenceLoss(num_attentions, ril_features, ril_variant)
        )
        self.match = AGDAMatchLoss()

    def on_epoch_end(self) -> None:
        """Decay the RIL center momentum (call once per training epoch)."""
        self.ril.on_epoch_end()

    def sync_epoch(self, epoch: int) -> None:
        """Resume-safe decay: alpha = alpha0 * decay ** epoch at the start of ``epoch``."""
        self.ril.sync_epoch(epoch)

    def forward(
        self,
        out: MATOutput,
        labels: Tensor,
        out_agda: MATOutput | None = None,
        agda_selected: Tensor | None = None,
        update_centers_on_agda: bool = True,
    ) -> dict[str, Tensor]:
        """Loss terms (unweighted) and their weighted total ``loss``.

        Args:
            out: MAT output of the clean (B, 3, H, W) batch (baseline outputs give CE only).
            labels: (B,) long, 0 = real, 1 = fake.
            out_agda: MAT output of the AGDA-augmented batch, or None without AGDA.
            agda_selected: (B,) long map index chosen by AGDA (required with ``out_agda``).
            update_centers_on_agda: also run the RIL center update on the AGDA pass (its value is not added).
        Returns:
            ``{"loss", "ce"}`` plus ``"ril"`` when the output has RIL features and ``"agda_ce"``, ``"match"``
            with an AGDA pass.
        """
        _check_labels(labels, out.logits.shape[0], "MATLoss")
        terms = {"ce": F.cross_entropy(out.logits.float(), labels)}
        total = self.ce_weight * terms["ce"]
        if out.ril_features is not None:
            terms["ril"] = self.ril(out.ril_features, labels)
            total = total + self.ril_weight * terms["ril"]
        if out_agda is not None:
            if agda_selected is None or out.ril_features is None or out_agda.ril_features is None:
                raise ValueError("MATLoss: an AGDA pass needs agda_selected and RIL features in both outputs")
            terms["agda_ce"] = F.cross_entropy(out_agda.logits.float(), labels)
            if update_centers_on_agda:
                with torch.no_grad():
                    self.ril(out_agda.ril_features, labels, update=True)
            terms["match"] = self.match(out.ril_features, out_agda.ril_features, agda_selected)
            total = total + self.agda_weight * terms["agda_ce"] + self.match_weight * terms["match"]
        terms["loss"] = total
        return terms
