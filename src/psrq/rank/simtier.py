"""SimTier + MAKE (Sheng et al., CIKM 2024, arXiv 2407.19467), a baseline of the paper's Table 2.

SimTier: the cosine similarity of the target's content embedding with each history item's,
bucketed into `n_tiers` equal tiers over [-1, 1] and counted per tier (padded positions and
items without content excluded): an N-dim histogram fed to the MLP next to the ID features.

MAKE (multimodal knowledge extractor): the multimodal-related parameters train for several
epochs while the ID-related ones keep the usual regime. psrq's schedule, exactly:

1. Phase "make" (`make_epochs` = K epochs, before the main loop): only the multimodal module
   `mm` trains (content projection, attention over the projected history, hidden layer, its own
   logit head), on the CTR loss of that head, with its own optimiser.
2. Main loop (the preset's regime: one epoch in `paper`, early stopping in `default`, like every
   other model's ID parameters): `mm` is frozen and its hidden output m is a feature of the ID
   model (item-ID embeddings, their target attention, the tower); only those parameters train.
With K = 0 there is no phase 1 and `mm` trains jointly with the ID model (SimTier without MAKE).

    forward(target int64 [B], history int64 [B, L] or [1, L]) -> logits float [B]
    tower input: [h_id (d), e_id_t (d), tiers (N), m (d)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from psrq.errors import ConfigError
from psrq.rank.models import MODELS, PAD, PretrainPhase, RankingModel, TableShapes, _id_embedding

MAKE_PHASE = "make"


def simtier_histogram(
    target: torch.Tensor,
    history: torch.Tensor,
    mask: torch.Tensor,
    n_tiers: int,
    *,
    normalize: bool = False,
) -> torch.Tensor:
    """Per-tier counts of cos(target, history_j) over the real positions j.

    target: float [B, D]; history: float [B, L, D] or [1, L, D]; mask: bool [B, L] or [1, L]
    (True = real position) -> float [B, n_tiers]. Tier i covers [-1 + 2i/N, -1 + 2(i+1)/N), the
    last one closed at 1. Positions where either vector is zero (no content) are not counted.
    With `normalize`, counts are divided by the number of counted positions (0 stays 0).
    """
    t_norm = target.norm(dim=-1)  # [B]
    h_norm = history.norm(dim=-1)  # [B|1, L]
    cos = torch.einsum("bd,bld->bl", target, history.expand(target.shape[0], -1, -1))
    cos = cos / (t_norm.unsqueeze(1) * h_norm).clamp_min(1e-12)
    counted = mask & (h_norm > 0) & (t_norm > 0).unsqueeze(1)  # [B, L]
    inner = torch.linspace(-1.0, 1.0, n_tiers + 1, dtype=cos.dtype, device=cos.device)[1:-1]
    # right=True: a value on a boundary goes to the upper tier; cos = 1 lands in the last tier.
    tier = torch.bucketize(cos.clamp(-1.0, 1.0).contiguous(), inner, right=True)  # [B, L] in 0..N-1
    hist = torch.zeros(cos.shape[0], n_tiers, dtype=cos.dtype, device=cos.device)
    hist.scatter_add_(1, tier, counted.to(cos.dtype))
    if normalize:
        hist = hist / counted.sum(1, keepdim=True).clamp_min(1).to(cos.dtype)
    return hist


class MultimodalModule(nn.Module):
    """MAKE's multimodal module: content -> d (learned), target attention over the projected
    history, [pooled, target, tiers] -> hidden m [B, d], plus a logit head used in phase "make".
    """

    def __init__(self, in_dim: int, dim: int, n_tiers: int, pooling: nn.Module) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.pooling = pooling
        self.hidden = nn.Sequential(nn.Linear(2 * dim + n_tiers, dim), nn.ReLU())
        self.head = nn.Linear(dim, 1)

    def forward(
        self, f_t: torch.Tensor, f_h: torch.Tensor, mask: torch.Tensor, tiers: torch.Tensor
    ) -> torch.Tensor:
        p_t = self.proj(f_t)
        pooled = self.pooling(self.proj(f_h), p_t, mask)
        return self.hidden(torch.cat([pooled, p_t, tiers], dim=-1))


class SimTierMAKE(RankingModel):
    """DIN over item IDs + SimTier histogram + MAKE multimodal module (see module docstring).

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "SimTierMAKE"

    def __init__(
        self,
        shapes: TableShapes,
        *,
        modalities: Sequence[str] | None = None,
        n_tiers: int = 10,
        normalize_tiers: bool = False,
        make_epochs: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(shapes, **kwargs)
        if int(n_tiers) < 1:
            raise ConfigError(f"SimTierMAKE option n_tiers must be >= 1, got {n_tiers}")
        if int(make_epochs) < 0:
            raise ConfigError(f"SimTierMAKE option make_epochs must be >= 0, got {make_epochs}")
        mods = list(shapes.content_dims) if modalities is None else list(modalities)
        self._use_content(mods)
        self.n_tiers, self.normalize_tiers, self.make_epochs = (
            int(n_tiers),
            bool(normalize_tiers),
            int(make_epochs),
        )
        d = self.dim
        self.id_embedding = _id_embedding(shapes.n_ids, d, self.sparse_embeddings)
        self.id_pooling = self._pooling()
        self.mm = MultimodalModule(
            sum(shapes.content_dims[m] for m in mods), d, self.n_tiers, self._pooling()
        )
        self.tower = self._tower(3 * d + self.n_tiers)

    def model_kwargs(self) -> dict[str, Any]:
        return {
            **super().model_kwargs(),
            "modalities": self.content_modalities,
            "n_tiers": self.n_tiers,
            "normalize_tiers": self.normalize_tiers,
            "make_epochs": self.make_epochs,
        }

    def pretraining_phases(self) -> list[PretrainPhase]:
        return [PretrainPhase(MAKE_PHASE, self.mm, self.make_epochs)] if self.make_epochs else []

    def content_unit(self, items: torch.Tensor) -> torch.Tensor:
        """Content [..., D] with each modality l2-normalised, so each counts equally in the cosine."""
        parts = [
            nn.functional.normalize(getattr(self, f"content_{m}")[items], dim=-1)
            for m in self.content_modalities
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        f_t, f_h = self.content_unit(target), self.content_unit(history)
        tiers = simtier_histogram(f_t, f_h, mask, self.n_tiers, normalize=self.normalize_tiers)
        m = self.mm(f_t, f_h, mask, tiers)
        if self.phase == MAKE_PHASE:
            return self.mm.head(m).squeeze(-1)
        id_t = self.id_embedding(self.item_to_id[target])
        h = self.id_pooling(self.id_embedding(self.item_to_id[history]), id_t, mask)
        return self.tower(torch.cat([h, id_t, tiers, m], dim=-1))


MODELS[SimTierMAKE.name] = SimTierMAKE
