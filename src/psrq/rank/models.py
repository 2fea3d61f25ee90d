"""Ranking models: MCCA (the paper's), its two ablations, and the paper's baselines.

Every model scores (target item, history of items) pairs and returns one logit per sample:

    forward(target: int64 [B], history: int64 [B, L]) -> logits float [B]

Items are *row indices into the model's item tables* (see `psrq.rank.batches.ItemTables`):
row 0 is padding, row 1 is the out-of-vocabulary placeholder, rows >= 2 are catalogue items.
Per-item features (ID-vocabulary index, semantic IDs per codebook, content embeddings) live in
buffers of the model, so a batch is only two index tensors and the model directory carries
everything needed to score. Padded history positions are masked explicitly (``history != 0``).

| model | item representation | pooling(s) | tower input |
|---|---|---|---|
| MCCA | ID emb.; SID emb. per codebook | one per modality + joint (query: target joint SID emb.), one over IDs (query: target ID emb.) | [h^m..., h^o, h^r, e^r_t, e^o_t] |
| MCCA use_msc=False | same, joint codebook only | joint + IDs | [h^o, h^r, e^r_t, e^o_t] |
| MCCA use_mjc=False | same, no joint codebook | each modality queried by the target's own SID emb. + IDs | [h^m..., h^r, e^r_t, e^m_t...] |
| DIN | ID emb. (+ one codebook's SID emb., added) | one (query: target rep.) | [h, e_t] |
| VBPR | ID emb. and a learned projection of content | masked mean (no attention) | dot products + item bias + content bias |
| ContentConcat | projection of the concatenated content embeddings, no IDs | one | [h, e_t] |
| SimTierMAKE (`rank/simtier.py`) | ID emb.; SimTier histogram; MAKE multimodal module | one over IDs + one over projected content | [h, e_t, tiers, m] |
| QARM (`rank/qarm.py`) | ID emb. ‖ VQ-code emb. ‖ RQ-code emb. (codes fitted on training data) | one | [h, e_t] |

Codebooks whose codes are identical for every item (`TableShapes.sid_aliases`; with one modality
the joint SID is that modality's) are built once: one table, one pooling. Beyond the paper, MCCA
and DIN take ``dot`` (a VBPR-style dot-product term beside the tower) and ``content`` (the
projected content embedding as an extra item feature); both are off by default.

Two hooks let a model do work that needs the training data or a schedule of its own (both are
no-ops here): `fit_item_features(train, seed)` runs once before training (QARM fits its
alignment and codes), `pretraining_phases()` lists phases trained before the main loop, each on
its own sub-module and head (SimTier+MAKE's multi-epoch multimodal module); and
`item_tables_changed()` runs after the item-table buffers are replaced (QARM codes new items).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from psrq.errors import ConfigError
from psrq.formats.sids import JOINT
from psrq.rank.layers import (
    MLPTower,
    SIDEmbedding,
    TargetAttentionPooling,
    masked_mean,
    pool_stacked,
)

PAD = 0  # item row / ID index reserved for padding
OOV = 1  # item row / ID index reserved for unknown items (shared out-of-vocabulary embedding)


@dataclass
class TableShapes:
    """Sizes of a model's item tables; enough to rebuild an empty model before loading weights."""

    n_items: int  # rows of the item tables, including PAD and OOV rows
    n_ids: int  # rows of the item-ID embedding, including PAD and OOV
    sid_sizes: dict[str, list[int]] = field(default_factory=dict)  # codebook -> k per level
    content_dims: dict[str, int] = field(default_factory=dict)  # modality -> embedding width
    # codebook -> an earlier codebook with identical codes for every item (built once, see
    # `identical_codebooks`); e.g. {"joint": "text"} when text is the only modality.
    sid_aliases: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableShapes:
        return cls(
            n_items=int(d["n_items"]),
            n_ids=int(d["n_ids"]),
            sid_sizes={k: [int(x) for x in v] for k, v in d.get("sid_sizes", {}).items()},
            content_dims={k: int(v) for k, v in d.get("content_dims", {}).items()},
            sid_aliases={str(k): str(v) for k, v in d.get("sid_aliases", {}).items()},
        )


def identical_codebooks(codes: dict[str, Any], sizes: dict[str, list[int]]) -> dict[str, str]:
    """{codebook: earlier codebook with the same codes for every item row and the same sizes}.

    `codes`: {codebook: int array [n_items, n_levels]}. Modalities come before `joint`, so with
    one modality the joint codebook maps to that modality ({"joint": "text"}): its input [X^t]
    *is* X^t, and a model built from the alias map learns one table and one pooling for it.
    """
    import numpy as np

    order = sorted(codes, key=lambda cb: cb == JOINT)  # stable: file order, joint last
    aliases: dict[str, str] = {}
    kept: list[str] = []
    for cb in order:
        same = next(
            (
                k
                for k in kept
                if list(sizes[k]) == list(sizes[cb]) and np.array_equal(codes[k], codes[cb])
            ),
            None,
        )
        if same is None:
            kept.append(cb)
        else:
            aliases[cb] = same
    return aliases


@dataclass
class PretrainPhase:
    """A phase trained before the main loop: `module`'s parameters only, for `epochs` epochs,
    on the CTR loss of the logits `forward` returns while the phase is active (see
    `RankingModel.active_phase`). After the phase, `module` is frozen."""

    name: str
    module: nn.Module
    epochs: int


class RankingModel(nn.Module):
    """Shared item tables (buffers) and lookups. Subclasses implement `forward`."""

    name: ClassVar[str] = "base"

    def __init__(
        self,
        shapes: TableShapes,
        *,
        dim: int = 64,
        attention_hidden: Sequence[int] = (64, 32),
        tower_hidden: Sequence[int] = (256, 128, 64),
        attention_product: bool = True,
        sparse_embeddings: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        # Sparse embedding gradients: an optimiser step then touches only the rows in the batch
        # (dense Adam over a 100k-row table costs more than the whole forward/backward pass).
        self.sparse_embeddings = bool(sparse_embeddings)
        self.shapes = shapes
        self.dim = int(dim)
        self.attention_hidden = tuple(int(h) for h in attention_hidden)
        self.tower_hidden = tuple(int(h) for h in tower_hidden)
        self.attention_product = bool(attention_product)
        self.register_buffer("item_to_id", torch.zeros(shapes.n_items, dtype=torch.int64))
        self.codebooks: list[str] = []
        self.content_modalities: list[str] = []
        self.phase: str | None = None  # name of the active PretrainPhase; None = the full model

    # ---- training hooks (no-ops unless a model needs them) ---------------------------------------
    def fit_item_features(self, train: Any, seed: int) -> None:
        """Fit item-side features from the TRAINING split (an EncodedSplit) before training."""

    def pretraining_phases(self) -> list[PretrainPhase]:
        """Phases trained, in order, before the main training loop."""
        return []

    def item_tables_changed(self) -> None:
        """Called after the item-table buffers were replaced (e.g. rows added for new items)."""

    @contextmanager
    def active_phase(self, name: str) -> Iterator[None]:
        """While active, `forward` returns the logits of pre-training phase `name`."""
        self.phase = name
        try:
            yield
        finally:
            self.phase = None

    # ---- item tables ----------------------------------------------------------------------------
    def canonical(self, codebook: str) -> str:
        """The codebook whose tables serve `codebook` (itself unless its codes equal another's)."""
        return self.shapes.sid_aliases.get(codebook, codebook)

    def _use_codebooks(self, codebooks: Sequence[str]) -> None:
        for name in codebooks:
            if name not in self.shapes.sid_sizes:
                raise ConfigError(
                    f"{self.name} needs semantic IDs of codebook {name!r}, but the item tables only "
                    f"have {sorted(self.shapes.sid_sizes) or 'none'} (check the sids.parquet columns sid_<codebook>)"
                )
            cb = self.canonical(name)
            if cb in self.codebooks:
                continue  # identical codes: one buffer, one table
            n_levels = len(self.shapes.sid_sizes[cb])
            self.register_buffer(
                f"sids_{cb}", torch.zeros(self.shapes.n_items, n_levels, dtype=torch.int64)
            )
            self.codebooks.append(cb)

    def _use_content(self, modalities: Sequence[str]) -> None:
        if not modalities:
            raise ConfigError(
                f"{self.name} needs content embeddings, but none were given (embeddings/<modality>.parquet)"
            )
        for m in modalities:
            if m not in self.shapes.content_dims:
                raise ConfigError(
                    f"{self.name} needs content embeddings of modality {m!r}; available: {sorted(self.shapes.content_dims)}"
                )
            self.register_buffer(
                f"content_{m}",
                torch.zeros(self.shapes.n_items, self.shapes.content_dims[m], dtype=torch.float32),
            )
            self.content_modalities.append(m)

    def sid_codes(self, codebook: str, items: torch.Tensor) -> torch.Tensor:
        """Shifted codes int64 [..., n_levels] (0 = missing) of item rows `items` [...]."""
        return getattr(self, f"sids_{self.canonical(codebook)}")[items]

    def content(self, items: torch.Tensor) -> torch.Tensor:
        """Concatenated content embeddings float [..., sum of dims] of item rows `items` [...]."""
        parts = [getattr(self, f"content_{m}")[items] for m in self.content_modalities]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments (without `shapes`), for saving and rebuilding."""
        return {
            "dim": self.dim,
            "attention_hidden": list(self.attention_hidden),
            "tower_hidden": list(self.tower_hidden),
            "attention_product": self.attention_product,
            "sparse_embeddings": self.sparse_embeddings,
            "dropout": self.dropout,
        }

    def describe(self) -> str:
        """One line saying what was built (saved in spec.json)."""
        return self.name

    def _tower(self, in_dim: int) -> MLPTower:
        return MLPTower(in_dim, self.tower_hidden, dropout=self.dropout)

    def _content_projection(self) -> nn.Linear:
        """E: concatenated content embeddings -> d (VBPR's projection), after `_use_content`."""
        return nn.Linear(
            sum(self.shapes.content_dims[m] for m in self.content_modalities), self.dim, bias=False
        )

    def _pooling(self) -> TargetAttentionPooling:
        return TargetAttentionPooling(
            self.dim, self.attention_hidden, use_product=self.attention_product
        )


def _id_embedding(n_ids: int, dim: int, sparse: bool = False) -> nn.Embedding:
    emb = nn.Embedding(n_ids, dim, padding_idx=PAD, sparse=sparse)
    nn.init.normal_(emb.weight, std=0.05)
    with torch.no_grad():
        emb.weight[PAD].zero_()
        emb.weight[OOV].zero_()  # neutral until (and unless) training sees OOV items
    return emb


def _mean_dot(keys: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """VBPR-style interaction <masked mean of keys, target>: keys [B|1, L, d], target [B, d] -> [B]."""
    return (masked_mean(keys, mask) * target).sum(-1)


class MCCA(RankingModel):
    """Multi-codebook cross-attention (the paper's ranking model), with its two ablations.

    - ``use_msc`` (modal-specific codebooks): pool each modality's SID sequence.
    - ``use_mjc`` (modal-joint codebook): pool the joint SID sequence, and use the target's joint
      SID embedding as the *shared query* of every multimodal pooling.
    Full model: both True. "w/o MSC": use_msc=False. "w/o MJC": use_mjc=False, in which case each
    modality's pooling is queried by the target's own SID embedding of that modality.
    The collaborative branch (item-ID sequence queried by the target ID embedding) is always on.

    Codebooks with identical codes (``shapes.sid_aliases``) are built once: with one modality
    the joint SID is that modality's SID, so the full model has one SID table and one SID
    pooling, queried by the target's joint (= text) embedding; "w/o MSC" and "w/o MJC" are then
    the same network as the full model.

    Beyond the paper (off by default; docs/ranking.md):
    - ``dot``: add VBPR-style dot products <mean of the history, target> per branch (item IDs,
      each SID codebook with the target's own SID embedding, content) to the tower's logit.
    - ``content``: an extra branch over the projected content embeddings E f (every modality
      in the item tables, concatenated), pooled with the target's E f_t as query; h^c and
      E f_t join the tower input.

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "MCCA"
    # True: all poolings in one batched op; False: one call per pooling module (the reference
    # path, same weights and same state_dict; tests and benchmarks compare the two).
    batched_poolings: ClassVar[bool] = True

    def __init__(
        self,
        shapes: TableShapes,
        *,
        modalities: Sequence[str] | None = None,
        use_msc: bool = True,
        use_mjc: bool = True,
        dot: bool = False,
        content: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(shapes, **kwargs)
        if not (use_msc or use_mjc):
            raise ConfigError("MCCA needs use_msc or use_mjc (or both); with neither it is DIN")
        mods = (
            [m for m in shapes.sid_sizes if m != JOINT] if modalities is None else list(modalities)
        )
        if use_msc and not mods:
            raise ConfigError(
                "MCCA with modal-specific codebooks needs at least one sid_<modality> column besides sid_joint"
            )
        self.modalities = mods
        self.use_msc, self.use_mjc = bool(use_msc), bool(use_mjc)
        self.dot, self.use_content = bool(dot), bool(content)
        wanted = (mods if use_msc else []) + ([JOINT] if use_mjc else [])
        self._use_codebooks(wanted)
        # One pooling per *distinct* codebook: a joint codebook equal to a modality's is that one.
        self.attended = list(dict.fromkeys(self.canonical(cb) for cb in wanted))
        self.query_codebook = self.canonical(JOINT) if use_mjc else None
        d = self.dim
        self.id_embedding = _id_embedding(shapes.n_ids, d, self.sparse_embeddings)
        self.sid_embeddings = nn.ModuleDict(
            {
                cb: SIDEmbedding(shapes.sid_sizes[cb], d, sparse=self.sparse_embeddings)
                for cb in self.codebooks
            }
        )
        self.sid_poolings = nn.ModuleDict({cb: self._pooling() for cb in self.attended})
        self.id_pooling = self._pooling()
        n_target_sid = 1 if use_mjc else len(self.attended)
        n_content = 0
        if self.use_content:
            self._use_content(list(shapes.content_dims))
            self.content_proj = self._content_projection()
            self.content_pooling = self._pooling()
            n_content = 2  # h^c and E f_t
        self.tower = self._tower(d * (len(self.attended) + 2 + n_target_sid + n_content))

    def model_kwargs(self) -> dict[str, Any]:
        return {
            **super().model_kwargs(),
            "modalities": self.modalities,
            "use_msc": self.use_msc,
            "use_mjc": self.use_mjc,
            "dot": self.dot,
            "content": self.use_content,
        }

    def describe(self) -> str:
        variant = (
            "MCCA"
            if self.use_msc and self.use_mjc
            else ("MCCA w/o MSC" if self.use_mjc else "MCCA w/o MJC")
        )
        extras = "".join(s for s, on in (("+content", self.use_content), ("+dot", self.dot)) if on)
        tables = ", ".join(self.codebooks)
        text = f"{variant}{extras}: SID tables [{tables}], poolings over [{', '.join(self.attended)}] + item IDs"
        if self.query_codebook is not None:
            text += f", shared query = target's {self.query_codebook} SID embedding"
        aliased = {a: c for a, c in self.shapes.sid_aliases.items() if c in self.codebooks}
        if aliased:
            same = ", ".join(f"{a} = {c}" for a, c in aliased.items())
            text += f"; identical codebooks built once ({same})"
            if len(self.attended) == 1 and self.use_msc and self.use_mjc:
                text += ": one modality, so modal-specific and modal-joint are the same codebook"
        return text

    def target_query(self, target: torch.Tensor) -> torch.Tensor:
        """The shared query e^o_t: the target's joint SID embedding [B, d] (requires use_mjc)."""
        cb = self.query_codebook or JOINT
        return self.sid_embeddings[cb](self.sid_codes(cb, target))

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        id_t = self.id_embedding(self.item_to_id[target])  # [B, d]
        id_h = self.id_embedding(self.item_to_id[history])  # [B, L, d]
        # Every pooling (item IDs, each attended codebook, content) as (module, keys, query), in
        # tower order; they run as one batched op (`pool_stacked`).
        poolings, keys, queries = [self.id_pooling], [id_h], [id_t]
        dots = [_mean_dot(id_h, id_t, mask)] if self.dot else []
        target_sid_parts = []
        shared_query = self.target_query(target) if self.use_mjc else None
        for cb in self.attended:
            emb = self.sid_embeddings[cb]
            sid_h = emb(self.sid_codes(cb, history))  # [B, L, d]
            own = emb(self.sid_codes(cb, target)) if shared_query is None or self.dot else None
            if shared_query is None:
                target_sid_parts.append(own)
            poolings.append(self.sid_poolings[cb])
            keys.append(sid_h)
            queries.append(shared_query if shared_query is not None else own)
            if self.dot:
                dots.append(_mean_dot(sid_h, own, mask))
        if shared_query is not None:
            target_sid_parts = [shared_query]
        if self.use_content:
            c_t = self.content_proj(self.content(target))  # [B, d]
            c_h = self.content_proj(self.content(history))  # [B, L, d]
            poolings.append(self.content_pooling)
            keys.append(c_h)
            queries.append(c_t)
            target_sid_parts.append(c_t)
            if self.dot:
                dots.append(_mean_dot(c_h, c_t, mask))
        if self.batched_poolings:
            parts = pool_stacked(poolings, torch.stack(keys), torch.stack(queries), mask).unbind(0)
        else:  # the reference: one call per pooling module
            parts = [p(k, q, mask) for p, k, q in zip(poolings, keys, queries, strict=True)]
        logits = self.tower(torch.cat([*parts, id_t, *target_sid_parts], dim=-1))
        return logits + torch.stack(dots).sum(0) if dots else logits


class DIN(RankingModel):
    """Deep Interest Network: item-ID embeddings, target attention, MLP.

    With ``sid_codebook`` set (e.g. "text"), the summed level embeddings of that codebook's SID
    are *added* to the item representation (the paper's "DIN + <quantizer>" rows).

    Beyond the paper (off by default): ``content`` adds the projected content E f (every
    modality, concatenated) to the item representation; ``dot`` adds the VBPR-style
    <mean of the history's representations, target representation> to the tower's logit.

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "DIN"

    def __init__(
        self,
        shapes: TableShapes,
        *,
        sid_codebook: str | None = None,
        dot: bool = False,
        content: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(shapes, **kwargs)
        self.sid_codebook = sid_codebook
        self.dot, self.use_content = bool(dot), bool(content)
        self.id_embedding = _id_embedding(shapes.n_ids, self.dim, self.sparse_embeddings)
        if sid_codebook is not None:
            self._use_codebooks([sid_codebook])
            cb = self.canonical(sid_codebook)
            self.sid_embedding = SIDEmbedding(
                shapes.sid_sizes[cb], self.dim, sparse=self.sparse_embeddings
            )
        if self.use_content:
            self._use_content(list(shapes.content_dims))
            self.content_proj = self._content_projection()
        self.pooling = self._pooling()
        self.tower = self._tower(2 * self.dim)

    def model_kwargs(self) -> dict[str, Any]:
        return {
            **super().model_kwargs(),
            "sid_codebook": self.sid_codebook,
            "dot": self.dot,
            "content": self.use_content,
        }

    def describe(self) -> str:
        base = "DIN" if self.sid_codebook is None else f"DIN + {self.sid_codebook} SIDs"
        return base + "".join(
            s for s, on in ((" + content", self.use_content), (" + dot", self.dot)) if on
        )

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        """[...] item rows -> [..., d]."""
        e = self.id_embedding(self.item_to_id[items])
        if self.sid_codebook is not None:
            e = e + self.sid_embedding(self.sid_codes(self.sid_codebook, items))
        if self.use_content:
            e = e + self.content_proj(self.content(items))
        return e

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        e_t = self.item_repr(target)
        e_h = self.item_repr(history)
        logits = self.tower(torch.cat([self.pooling(e_h, e_t, mask), e_t], dim=-1))
        return logits + _mean_dot(e_h, e_t, mask) if self.dot else logits


class VBPR(RankingModel):
    """VBPR (He & McAuley 2016) in click-through form.

    VBPR scores  b + b_i + <g_u, g_i> + <t_u, E f_i> + <beta', f_i>  with user factors g_u, t_u.
    Here there is no user table (users are represented by their history, so unseen users work):
    g_u = masked mean of the history's ID embeddings, t_u = masked mean of the history's
    projected content E f_j. Content f = the concatenated content embeddings, E a learned
    linear projection to d.

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "VBPR"

    def __init__(
        self, shapes: TableShapes, *, modalities: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(shapes, **kwargs)
        mods = list(shapes.content_dims) if modalities is None else list(modalities)
        self._use_content(mods)
        in_dim = sum(shapes.content_dims[m] for m in mods)
        self.id_embedding = _id_embedding(shapes.n_ids, self.dim, self.sparse_embeddings)
        self.item_bias = nn.Embedding(
            shapes.n_ids, 1, padding_idx=PAD, sparse=self.sparse_embeddings
        )
        nn.init.zeros_(self.item_bias.weight)
        self.content_proj = nn.Linear(in_dim, self.dim, bias=False)
        self.content_bias = nn.Linear(in_dim, 1)

    def model_kwargs(self) -> dict[str, Any]:
        return {**super().model_kwargs(), "modalities": self.content_modalities}

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        ids_t = self.item_to_id[target]
        g_u = masked_mean(self.id_embedding(self.item_to_id[history]), mask)
        f_t = self.content(target)
        t_u = masked_mean(self.content_proj(self.content(history)), mask)
        return (
            self.item_bias(ids_t).squeeze(-1)
            + self.content_bias(f_t).squeeze(-1)
            + (g_u * self.id_embedding(ids_t)).sum(-1)
            + (t_u * self.content_proj(f_t)).sum(-1)
        )


class ContentConcat(RankingModel):
    """Content only: the concatenated content embeddings of each item, projected to d by a learned
    linear layer, then DIN's target attention and tower. No item-ID or SID tables at all.

    forward(target [B], history [B, L]) -> logits [B].
    """

    name = "ContentConcat"

    def __init__(
        self, shapes: TableShapes, *, modalities: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(shapes, **kwargs)
        mods = list(shapes.content_dims) if modalities is None else list(modalities)
        self._use_content(mods)
        self.content_proj = nn.Linear(sum(shapes.content_dims[m] for m in mods), self.dim)
        self.pooling = self._pooling()
        self.tower = self._tower(2 * self.dim)

    def model_kwargs(self) -> dict[str, Any]:
        return {**super().model_kwargs(), "modalities": self.content_modalities}

    def forward(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mask = history != PAD
        e_t = self.content_proj(self.content(target))
        h = self.pooling(self.content_proj(self.content(history)), e_t, mask)
        return self.tower(torch.cat([h, e_t], dim=-1))


MODELS: dict[str, type[RankingModel]] = {cls.name: cls for cls in (MCCA, DIN, VBPR, ContentConcat)}

# The paper's two other baselines live in modules of their own (they bring training hooks and
# item-code fitting) that import this one, so they add themselves to MODELS when imported;
# `registered_models` imports them, so every entry point that builds models by name sees them.
BASELINE_MODULES = ("psrq.rank.simtier", "psrq.rank.qarm")


def registered_models() -> dict[str, type[RankingModel]]:
    """Every model class by name (MODELS after importing the baseline modules)."""
    import importlib

    for module in BASELINE_MODULES:
        importlib.import_module(module)
    return MODELS


def build_model(name: str, shapes: TableShapes, **kwargs: Any) -> RankingModel:
    """Instantiate a model by name; unknown names raise ConfigError listing the known ones."""
    models = registered_models()
    try:
        cls = models[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {sorted(models)}") from None
    try:
        return cls(shapes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"bad options for model {name}: {e}") from e
