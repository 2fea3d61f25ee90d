"""QARM (Luo et al., arXiv 2411.11739, Kuaishou), a baseline of the paper's Table 2.

Before training (`fit_item_features`, TRAINING split only):
1. Alignment pairs: for every positive training sample, its target and the item of its history
   (the user's earlier positives) most similar to it by content cosine.
2. Item alignment: a linear projection W [align_dim, D] of the (per-modality l2-normalised)
   content, trained with a symmetric in-batch InfoNCE loss on those pairs; aligned = norm(W f).
3. Pool: the aligned vectors of the ID vocabulary (items seen >= min_id_count times in
   training), one per ID row.
4. VQ code of an item: the ID rows of its `vq_k` nearest pool vectors (inner product of unit
   vectors), nearest first. RQ code: `rq_levels` levels of residual k-means (psrq's RQKMeans,
   fitted on the pool) over the aligned vector.
Codes of every item row are buffers; the projection, pool and centroids are buffers too, so a
saved model codes items it never saw (`item_tables_changed`).

Ranker (DIN-style): item representation [e_id ‖ mean of the VQ-code embeddings ‖ sum of the
RQ level embeddings] (3d), one target-attention pooling over the history, tower over [h, e_t].
The code embeddings train end to end with the ranker; codes themselves are fixed.

    forward(target int64 [B], history int64 [B, L] or [1, L]) -> logits float [B]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from psrq.errors import ConfigError, InputError
from psrq.rank.layers import SIDEmbedding, TargetAttentionPooling
from psrq.rank.models import MODELS, PAD, RankingModel, TableShapes, _id_embedding

CHUNK = 4096  # rows per block when scoring items against the pool


# ---- codes (pure functions; the hand-computed tests pin these) ---------------------------------
def alignment_pairs(
    target: torch.Tensor, history: torch.Tensor, label: torch.Tensor, content: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target rows, trigger rows) int64 [n_pairs]: for each positive sample with content, the
    history item (not the target itself, with content) of highest cosine to the target.

    target [n], history [n, L], label [n] of the training split; content float [n_items, D].
    """
    unit = nn.functional.normalize(content, dim=-1)
    has = content.norm(dim=-1) > 0
    pos = (label > 0.5) & has[target]
    t, h = target[pos], history[pos]
    valid = (h != PAD) & has[h] & (h != t.unsqueeze(1))
    best = torch.empty(len(t), dtype=torch.int64)
    for s in range(0, len(t), CHUNK):
        sim = torch.einsum("nd,nld->nl", unit[t[s : s + CHUNK]], unit[h[s : s + CHUNK]])
        best[s : s + CHUNK] = sim.masked_fill(~valid[s : s + CHUNK], -torch.inf).argmax(1)
    keep = valid.any(1)
    return t[keep], h[keep].gather(1, best[keep].unsqueeze(1)).squeeze(1)


def fit_alignment(
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    dim: int,
    *,
    epochs: int,
    temperature: float,
    seed: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
) -> torch.Tensor:
    """Weight [dim, D] of a linear map trained with symmetric in-batch InfoNCE on pairs (x_a, x_b)."""
    g = torch.Generator().manual_seed(seed)
    weight = nn.Parameter(torch.randn(dim, x_a.shape[1], generator=g) / x_a.shape[1] ** 0.5)
    opt = torch.optim.Adam([weight], lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_a), generator=g).split(batch_size):
            if len(idx) < 2:
                continue  # one pair has no in-batch negative
            a = nn.functional.normalize(x_a[idx] @ weight.T, dim=-1)
            b = nn.functional.normalize(x_b[idx] @ weight.T, dim=-1)
            logits = a @ b.T / temperature
            labels = torch.arange(len(idx))
            loss = nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(
                logits.T, labels
            )
            opt.zero_grad(set_to_none=True)
            (loss / 2).backward()
            opt.step()
    return weight.detach()


def topk_codes(
    queries: torch.Tensor, pool: torch.Tensor, pool_ids: torch.Tensor, k: int
) -> torch.Tensor:
    """VQ codes int64 [n, k]: `pool_ids` of the k pool vectors of highest inner product with each
    query, best first (ties: lower pool position first); rows of zero queries get 0 (= missing).
    When the pool has fewer than k vectors, the remaining columns are 0."""
    out = torch.zeros(len(queries), k, dtype=torch.int64)
    kk = min(k, len(pool))
    if kk == 0:
        return out
    for s in range(0, len(queries), CHUNK):
        q = queries[s : s + CHUNK]
        # stable order on ties: sort by (-score, position)
        scores = q @ pool.T
        order = torch.sort(-scores, dim=1, stable=True).indices[:, :kk]
        out[s : s + CHUNK, :kk] = pool_ids[order]
    out[queries.norm(dim=-1) == 0] = 0
    return out


def residual_codes(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """RQ codes int64 [n, levels] (unshifted): greedy nearest centroid per level on the residual.

    x float [n, d], centroids float [levels, K, d]."""
    residual = x.clone()
    codes = torch.empty(len(x), centroids.shape[0], dtype=torch.int64)
    for level, c in enumerate(centroids):
        dist = (residual**2).sum(1, keepdim=True) - 2 * residual @ c.T + (c**2).sum(1)
        codes[:, level] = dist.argmin(1)
        residual = residual - c[codes[:, level]]
    return codes


# ---- the model ---------------------------------------------------------------------------------
class QARM(RankingModel):
    """ID + quantitative-code embeddings (VQ top-k neighbours, RQ residual k-means) in a DIN ranker.

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "QARM"

    def __init__(
        self,
        shapes: TableShapes,
        *,
        modalities: Sequence[str] | None = None,
        align_dim: int = 64,
        align_epochs: int = 5,
        align_temperature: float = 0.1,
        vq_k: int = 25,
        rq_levels: int = 3,
        rq_codebook_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(shapes, **kwargs)
        for opt, value, low in (
            ("align_dim", align_dim, 1),
            ("align_epochs", align_epochs, 0),
            ("vq_k", vq_k, 1),
            ("rq_levels", rq_levels, 1),
            ("rq_codebook_size", rq_codebook_size, 2),
        ):
            if int(value) < low:
                raise ConfigError(f"QARM option {opt} must be >= {low}, got {value}")
        if not float(align_temperature) > 0:
            raise ConfigError(f"QARM option align_temperature must be > 0, got {align_temperature}")
        mods = list(shapes.content_dims) if modalities is None else list(modalities)
        self._use_content(mods)
        self.align_dim, self.align_epochs, self.align_temperature = (
            int(align_dim),
            int(align_epochs),
            float(align_temperature),
        )
        self.vq_k, self.rq_levels, self.rq_codebook_size = (
            int(vq_k),
            int(rq_levels),
            int(rq_codebook_size),
        )
        in_dim = sum(shapes.content_dims[m] for m in mods)
        n = shapes.n_items
        self.register_buffer("align_weight", torch.zeros(self.align_dim, in_dim))
        self.register_buffer(
            "pool", torch.zeros(shapes.n_ids, self.align_dim)
        )  # row = ID-vocab index
        self.register_buffer(
            "rq_centroids", torch.zeros(self.rq_levels, self.rq_codebook_size, self.align_dim)
        )
        self.register_buffer(
            "codes_vq", torch.zeros(n, self.vq_k, dtype=torch.int64)
        )  # ID rows, 0 = none
        self.register_buffer(
            "codes_rq", torch.zeros(n, self.rq_levels, dtype=torch.int64)
        )  # shifted, 0 = none
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        d = self.dim
        self.id_embedding = _id_embedding(shapes.n_ids, d, self.sparse_embeddings)
        self.vq_embedding = nn.EmbeddingBag(
            shapes.n_ids, d, mode="mean", padding_idx=PAD, sparse=self.sparse_embeddings
        )
        nn.init.normal_(self.vq_embedding.weight, std=0.05)
        with torch.no_grad():
            self.vq_embedding.weight[PAD].zero_()
        self.rq_embedding = SIDEmbedding(
            [self.rq_codebook_size] * self.rq_levels, d, sparse=self.sparse_embeddings
        )
        self.pooling = TargetAttentionPooling(
            3 * d, self.attention_hidden, use_product=self.attention_product
        )
        self.tower = self._tower(6 * d)

    def model_kwargs(self) -> dict[str, Any]:
        return {
            **super().model_kwargs(),
            "modalities": self.content_modalities,
            "align_dim": self.align_dim,
            "align_epochs": self.align_epochs,
            "align_temperature": self.align_temperature,
            "vq_k": self.vq_k,
            "rq_levels": self.rq_levels,
            "rq_codebook_size": self.rq_codebook_size,
        }

    # ---- fitting the codes (training data only) -------------------------------------------------
    def content_unit(self, items: torch.Tensor) -> torch.Tensor:
        """Content [..., D] with each modality l2-normalised (zeros stay zeros)."""
        parts = [
            nn.functional.normalize(getattr(self, f"content_{m}")[items], dim=-1)
            for m in self.content_modalities
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def aligned(self, items: torch.Tensor) -> torch.Tensor:
        """Aligned unit vectors [n, align_dim] of item rows (zero for items without content)."""
        return nn.functional.normalize(self.content_unit(items) @ self.align_weight.T, dim=-1)

    def fit_item_features(self, train: Any, seed: int) -> None:
        from psrq.quantize.rq_kmeans import RQKMeans

        with torch.no_grad():
            content = self.content_unit(torch.arange(self.shapes.n_items))
            a, b = alignment_pairs(train.target, train.history, train.label, content)
            if len(a) < 2:
                raise InputError(
                    f"QARM needs at least 2 alignment pairs (positive samples with a history), found {len(a)}"
                )
        self.align_weight = fit_alignment(
            content[a],
            content[b],
            self.align_dim,
            epochs=self.align_epochs,
            temperature=self.align_temperature,
            seed=seed,
        )
        with torch.no_grad():
            pool_rows = torch.from_numpy(np.flatnonzero(self.item_to_id.numpy() > 1))
            pool_ids = self.item_to_id[pool_rows]
            pool = self.aligned(pool_rows)
            has = pool.norm(dim=-1) > 0
            pool_rows, pool_ids, pool = pool_rows[has], pool_ids[has], pool[has]
            if len(pool) < self.rq_codebook_size:
                raise InputError(
                    f"QARM option rq_codebook_size={self.rq_codebook_size} exceeds the {len(pool)} training items "
                    "with content that form the code pool"
                )
            self.pool = torch.zeros_like(self.pool)
            self.pool[pool_ids] = pool
            rq = RQKMeans(
                n_levels=self.rq_levels, codebook_size=self.rq_codebook_size, seed=seed
            ).fit(pool.numpy())
            self.rq_centroids = torch.from_numpy(
                np.stack([np.asarray(c, np.float32) for c in rq.codebooks_])
            )
            self.fitted = torch.ones((), dtype=torch.bool)
            self.codes_vq, self.codes_rq = self.item_codes(torch.arange(self.shapes.n_items))

    def item_codes(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(VQ codes [n, vq_k] of ID rows, RQ codes [n, levels] shifted by one) of item rows."""
        x = self.aligned(items)
        pool_ids = torch.from_numpy(np.flatnonzero(self.pool.norm(dim=-1).numpy() > 0))
        vq = topk_codes(x, self.pool[pool_ids], pool_ids, self.vq_k)
        rq = residual_codes(x, self.rq_centroids) + 1
        rq[x.norm(dim=-1) == 0] = 0  # no content: no code
        vq[items < 2] = 0
        rq[items < 2] = 0  # PAD and OOV rows carry no codes
        return vq, rq

    def item_tables_changed(self) -> None:
        """Code rows added after fitting (new items at scoring time); drop rows that went away."""
        n_have = self.codes_vq.shape[0]
        n_now = getattr(self, f"content_{self.content_modalities[0]}").shape[0]
        if not bool(self.fitted) or n_now == n_have:
            return
        if n_now < n_have:
            self.codes_vq, self.codes_rq = self.codes_vq[:n_now], self.codes_rq[:n_now]
            return
        with torch.no_grad():
            vq, rq = self.item_codes(torch.arange(n_have, n_now))
        self.codes_vq = torch.cat([self.codes_vq, vq])
        self.codes_rq = torch.cat([self.codes_rq, rq])

    # ---- ranking --------------------------------------------------------------------------------
    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """[...] item rows -> [..., 3d]: ID ‖ VQ-code ‖ RQ-code embeddings."""
        vq = self.codes_vq[items]
        e_vq = self.vq_embedding(vq.reshape(-1, self.vq_k)).reshape(*items.shape, self.dim)
        return torch.cat(
            [
                self.id_embedding(self.item_to_id[items]),
                e_vq,
                self.rq_embedding(self.codes_rq[items]),
            ],
            dim=-1,
        )

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        # Each distinct item of the batch is embedded once (a batch repeats popular items many
        # times, and an item costs vq_k + levels + 1 lookups), then gathered back.
        items, inverse = torch.unique(torch.cat([target, history.reshape(-1)]), return_inverse=True)
        reps = self.item_repr(items)
        e_t = reps[inverse[: len(target)]]
        h = self.pooling(reps[inverse[len(target) :]].reshape(*history.shape, -1), e_t, mask)
        return self.tower(torch.cat([h, e_t], dim=-1))


MODELS[QARM.name] = QARM
