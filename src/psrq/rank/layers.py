"""Building blocks of the ranking models: summed SID embeddings, the DIN activation unit,
masked target-attention pooling, and the MLP tower.

Shapes use B = batch, L = history length, d = embedding width (d' = 64 in the paper),
n_levels = levels of a semantic-ID codebook.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class SIDEmbedding(nn.Module):
    """Item embedding from a semantic ID: one randomly initialised k_l x d table per level,
    summed over levels (the paper's e^z_i = sum_j E^z_j[id^z_ij]; centroids are NOT reused).

    Codes arrive shifted by one: 0 means "missing" (padding, or an item without this modality)
    and contributes a zero vector; code c of level l is stored as c + 1. All levels live in one
    `EmbeddingBag` (row 0 = the shared zero "missing" row, then level 0's k_0 rows, level 1's, ...),
    so the lookup-and-sum is one fused call with no [..., n_levels, d] intermediate.

    Input: int64 [..., n_levels] shifted codes. Output: float [..., d].
    """

    def __init__(self, codebook_sizes: Sequence[int], dim: int, *, sparse: bool = False) -> None:
        super().__init__()
        sizes = [int(k) for k in codebook_sizes]
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.EmbeddingBag(1 + sum(sizes), dim, mode="sum", padding_idx=0, sparse=sparse)
        nn.init.normal_(self.table.weight, std=0.05)
        with torch.no_grad():
            self.table.weight[0].zero_()
        self.n_levels = len(sizes)
        self.dim = dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        index = torch.where(codes > 0, codes + self.offsets, torch.zeros_like(codes))
        out = self.table(index.reshape(-1, self.n_levels))  # [N, d]
        return out.reshape(*codes.shape[:-1], self.dim)


class ActivationUnit(nn.Module):
    """DIN's local activation unit: one unnormalised weight per history position (no softmax).

    DIN feeds [k, q, k - q, k * q] to a linear layer. Because k - q is linear in k and q, that
    layer equals  k W_k + q W_q + (k * q) W_p  for free weights W_k, W_q, W_p; we compute it in
    this factored form so the query term is computed once per sample, not once per position
    (same function class, about half the multiply-adds). With ``use_product=False`` the unit sees
    only [k || q] (the paper's literal a(e_j || e_t)).

    keys: [B, L, d], query: [B, d] -> weights [B, L].
    """

    def __init__(
        self, dim: int, hidden: Sequence[int] = (64, 32), *, use_product: bool = True
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("the activation unit needs at least one hidden layer")
        first = int(hidden[0])
        self.key_proj = nn.Linear(dim, first)
        self.query_proj = nn.Linear(dim, first, bias=False)
        self.product_proj = nn.Linear(dim, first, bias=False) if use_product else None
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in itertools.pairwise(hidden):
            layers += [nn.Linear(int(a), int(b)), nn.ReLU()]
        layers.append(nn.Linear(int(hidden[-1]), 1))
        self.rest = nn.Sequential(*layers)

    def forward(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if keys.shape[0] == 1 and query.shape[0] > 1 and self.product_proj is not None:
            return self.shared_history_weights(keys[0], query)
        h = self.key_proj(keys) + self.query_proj(query).unsqueeze(1)  # [B, L, h0]
        if self.product_proj is not None:
            h = h + self.product_proj(keys * query.unsqueeze(1))
        return self.rest(h).squeeze(-1)

    def shared_history_weights(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """forward for ONE history scored against many queries: keys [L, d], query [B, d] -> [B, L].

        Scoring candidates for one user: the first layer  k_j W_k + b + q W_q + (k_j * q) W_p  is,
        for a fixed history, linear in q: q @ G_j + c_j with G_j = diag(k_j) W_p^T + W_q^T [d, h0]
        and c_j = k_j W_k + b. All L positions then take ONE [B, d] x [d, L*h0] product plus one
        broadcast add, instead of a [B, L, d] product tensor, three [B, L, h0] tensors and four
        kernels. Same function (float reassociation only; tests pin it to `forward` at 1e-6).
        """
        n_pos, dim = keys.shape
        first = self.key_proj.out_features
        assert self.product_proj is not None
        g = keys.t().unsqueeze(-1) * self.product_proj.weight.t().unsqueeze(1)  # [d, L, h0]
        g = g + self.query_proj.weight.t().unsqueeze(1)
        c = self.key_proj(keys).reshape(1, n_pos * first)  # [1, L*h0]
        h = torch.addmm(c, query, g.reshape(dim, n_pos * first))  # [B, L*h0]
        return self.rest(h.view(-1, n_pos, first)).squeeze(-1)


class TargetAttentionPooling(nn.Module):
    """h = sum_j a(k_j, q) * k_j over unpadded positions (DIN-style, no softmax).

    keys: [B, L, d], query: [B, d], mask: bool [B, L] (True = real position) -> [B, d].
    keys and mask may also be [1, L, d] / [1, L] (one history shared by B targets).
    Padded positions get weight exactly 0, so their ids never influence the output, and an
    empty history pools to the zero vector (no softmax, so no 0/0).
    """

    def __init__(
        self, dim: int, hidden: Sequence[int] = (64, 32), *, use_product: bool = True
    ) -> None:
        super().__init__()
        self.unit = ActivationUnit(dim, hidden, use_product=use_product)

    def forward(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if keys.shape[0] == 1 and mask.shape[0] == 1 and query.shape[0] > 1:
            # One history for many targets (scoring): padded positions get weight 0, so they are
            # dropped before the unit runs instead of being computed and masked.
            real = keys[:, mask[0]]  # [1, L_real, d]
            if real.shape[1] == 0:
                return keys.new_zeros(query.shape[0], keys.shape[-1])
            return self.unit(real, query) @ real[0]  # [B, L_real] @ [L_real, d]
        weights = self.unit(keys, query) * mask.to(keys.dtype)  # [B, L]
        # matmul (not bmm) so keys/mask may be [1, L, ...]: one user's history scored against B
        # candidates is embedded and key-projected once, then broadcast.
        return torch.matmul(weights.unsqueeze(1), keys).squeeze(1)


class MLPTower(nn.Module):
    """Prediction MLP: [B, in_dim] -> logits [B]. Hidden sizes default to [256, 128, 64].

    ``dropout`` > 0 drops each hidden activation with that probability while training (the
    module's train mode); in eval mode it is the identity, so scores are deterministic.
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int] = (256, 128, 64), *, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real positions: values [B, L, d], mask bool [B, L] -> [B, d] (0 for empty rows)."""
    m = mask.to(values.dtype).unsqueeze(-1)
    return (values * m).sum(1) / m.sum(1).clamp_min(1.0)


def _stacked_unit(units: Sequence[ActivationUnit]) -> tuple[torch.Tensor, ...]:
    """The units' weights stacked over a leading pooling axis C (a fresh autograd view each call,
    so the parameters, and hence state_dict keys, stay those of the per-pooling modules)."""
    w_k = torch.stack([u.key_proj.weight for u in units]).transpose(1, 2)  # [C, d, h0]
    b_k = torch.stack([u.key_proj.bias for u in units]).unsqueeze(1)  # [C, 1, h0]
    w_q = torch.stack([u.query_proj.weight for u in units]).transpose(1, 2)  # [C, d, h0]
    products = [u.product_proj for u in units]
    w_p = (
        None if products[0] is None else torch.stack([p.weight for p in products]).transpose(1, 2)
    )  # [C, d, h0]
    return w_k, b_k, w_q, w_p


def _stacked_rest(units: Sequence[ActivationUnit]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [C, in, out], bias [C, 1, out]) of each Linear after the first layer, stacked."""
    linears = [[m for m in u.rest if isinstance(m, nn.Linear)] for u in units]
    return [
        (
            torch.stack([lin[i].weight for lin in linears]).transpose(1, 2),
            torch.stack([lin[i].bias for lin in linears]).unsqueeze(1),
        )
        for i in range(len(linears[0]))
    ]


def _rest_batched(h: torch.Tensor, rest: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """ReLU, then the stacked Linear/ReLU layers: h [C, N, h0] -> [C, N] (batched matmuls)."""
    h = torch.relu(h)
    for i, (w, b) in enumerate(rest):
        h = torch.baddbmm(b, h, w)
        if i < len(rest) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def pool_stacked(
    poolings: Sequence[TargetAttentionPooling],
    keys: torch.Tensor,
    queries: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """C target-attention poolings run as ONE batched computation (no loop over poolings in training).

    keys [C, B, L, d] (or [C, 1, L, d]: one history shared by B targets), queries [C, B, d],
    mask bool [B, L] (or [1, L]) shared by every pooling -> [C, B, d], where slice c equals
    ``poolings[c](keys[c], queries[c], mask)`` (float reassociation only). The poolings must
    have the same shapes (same d, hidden sizes and use_product). The units' weights are stacked
    on the fly, so each pooling keeps its own parameters and the model's state_dict is unchanged;
    every matmul is a `baddbmm`/`bmm` over the pooling axis and no op is in-place (ONNX export).
    The exception is one history scored against many targets (`Ranker.score`): there each
    pooling runs its own folded-history fast path (measured faster, see below).
    """
    n_pool, n_keys, n_pos, dim = keys.shape
    if n_keys == 1 and mask.shape[0] == 1 and queries.shape[1] > 1:
        # One history, many targets (scoring): each pooling's own folded-history fast path
        # (`ActivationUnit.shared_history_weights`, padding dropped). Measured: stacking that path
        # over C made `Ranker.score` slower (1,000 candidates, 4 poolings: median 68 vs 43 ms),
        # its [C, B, L*h0] intermediates being C times larger than the cache-sized per-pooling ones.
        return torch.stack([pool(keys[c], queries[c], mask) for c, pool in enumerate(poolings)])
    units = [p.unit for p in poolings]
    w_k, b_k, w_q, w_p = _stacked_unit(units)
    rest = _stacked_rest(units)
    first = w_k.shape[-1]
    n_targets = queries.shape[1]
    if n_keys != n_targets:
        keys = keys.expand(-1, n_targets, -1, -1)
    if mask.shape[0] != n_targets:
        mask = mask.expand(n_targets, -1)
    flat = keys.reshape(n_pool, n_targets * n_pos, dim)
    if not torch.jit.is_tracing():
        # Padded positions get weight exactly 0, so the units run on the real positions only
        # (packed: [C, N_real, ...]); each weighted key is then added into its sample's row.
        pos = mask.reshape(-1).nonzero().squeeze(1)  # [N_real] flat (sample, position) index
        row = torch.div(pos, n_pos, rounding_mode="floor")  # the sample of each real position
        real = flat.index_select(1, pos)  # [C, N_real, d]
        if w_p is None:
            h = torch.baddbmm(b_k, real, w_k)
        else:
            product = real * queries.index_select(1, row)
            h = torch.baddbmm(torch.baddbmm(b_k, real, w_k), product, w_p)  # [C, N_real, h0]
        h = h + torch.bmm(queries, w_q).index_select(1, row)  # query term once per sample
        weights = _rest_batched(h, rest)  # [C, N_real]
        return keys.new_zeros(n_pool, n_targets, dim).index_add(
            1, row, weights.unsqueeze(-1) * real
        )
    # Traced (ONNX / TorchScript export): the dense form, no data-dependent shapes.
    if w_p is None:
        h = torch.baddbmm(b_k, flat, w_k)
    else:
        product = (keys * queries.unsqueeze(2)).reshape(n_pool, n_targets * n_pos, dim)
        h = torch.baddbmm(torch.baddbmm(b_k, flat, w_k), product, w_p)  # [C, N, h0]
    h = h.view(n_pool, n_targets, n_pos, first) + torch.bmm(queries, w_q).unsqueeze(2)
    weights = _rest_batched(h.view(n_pool, n_targets * n_pos, first), rest).view(
        n_pool, n_targets, n_pos
    )
    weights = weights * mask.to(keys.dtype)  # [C, B, L]
    return torch.matmul(weights.unsqueeze(2), keys).squeeze(2)  # [C, B, 1, L] @ [C, B, L, d]
