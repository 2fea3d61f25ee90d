"""How good are semantic IDs? Metrics on a code matrix, with or without the quantizer that made it.

    from psrq.quantize.quality import evaluate_ids
    report = evaluate_ids(X, q.transform(X), q)          # X: [n_items, dim], codes: [n_items, L]
    report["levels"][1]["coherence_code_lift"]           # level 2: do its codes still mean something?

Three families of metrics, each answering one question the paper raises:

* **Fidelity** (needs the quantizer): how well do the first l levels reconstruct X?
* **Semantics** (the paper's "semantic drift", Fig. 1): are items that share a code (or a code
  prefix) close to each other in the ORIGINAL embedding space, compared with chance?  And do the
  nearest embedding neighbours of an item share its code prefix?
* **Usage** (the "hourglass" effect): how many codes are used, how evenly, how often do full ID
  tuples collide, how much does level l+1 just repeat level l (NMI)?

Counting metrics (usage, collisions, NMI) use every item: they are O(n). Metrics that need the
embeddings (reconstruction, coherence, neighbours) use a seeded sample of at most `max_items`
items, so a 10M-item catalogue is scored in bounded time and memory. Everything is deterministic
for a given seed. Definitions are precise in the docstrings of the helpers below, and summarised
in `evaluate_ids`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from psrq.errors import InputError

if TYPE_CHECKING:
    from psrq.quantize.base import BaseQuantizer

DEFAULT_N_QUERIES = 5_000
# Neighbour search is done in query chunks so the [queries, items] score block stays small.
SEARCH_BATCH = 2_048


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def _check_inputs(X: Any, codes: Any) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    codes = np.asarray(codes)
    if X.ndim != 2 or X.shape[1] == 0:
        raise InputError(f"X must be a 2-D matrix [n_items, dim], got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise InputError(f"X must be numeric, got dtype {X.dtype}")
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise InputError(f"codes must be a 2-D matrix [n_items, n_levels], got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"codes must be integers, got dtype {codes.dtype}")
    if codes.shape[0] != X.shape[0]:
        raise InputError(
            f"codes has {codes.shape[0]} rows but X has {X.shape[0]}; they must describe the same items"
        )
    if codes.shape[0] == 0:
        raise InputError("cannot evaluate IDs of zero items")
    if codes.min() < 0:
        row, level = np.argwhere(codes < 0)[0]
        raise InputError(f"code {int(codes[row, level])} at row {row}, level {level} is negative")
    return X, codes.astype(np.int64, copy=False)


def _resolve_sizes(
    codes: np.ndarray, quantizer: BaseQuantizer | None, codebook_sizes: list[int] | None
) -> tuple[list[int], str]:
    """Codebook size per level and where it came from (quantizer, caller, or max code + 1)."""
    n_levels = codes.shape[1]
    if quantizer is not None:
        sizes, source = [int(k) for k in quantizer.codebook_sizes_], "quantizer"
    elif codebook_sizes is not None:
        sizes, source = [int(k) for k in codebook_sizes], "given"
    else:
        return [int(c) + 1 for c in codes.max(axis=0)], "inferred (max code + 1)"
    if len(sizes) != n_levels:
        raise InputError(
            f"codes have {n_levels} levels but the {source} codebook sizes are {sizes}"
        )
    for level, k in enumerate(sizes):
        col = codes[:, level]
        if col.max() >= k:
            row = int(np.flatnonzero(col >= k)[0])
            raise InputError(
                f"code {int(col[row])} at row {row}, level {level} is outside [0, {k})"
            )
    return sizes, source


# ---------------------------------------------------------------------------------------------
# counting metrics (all items)
# ---------------------------------------------------------------------------------------------
def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of non-negative sizes: 0 = all equal, -> 1 = one cluster holds everything."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.sum(ranks * x) / (n * x.sum()) - (n + 1) / n)


def usage_stats(level_codes: np.ndarray, k: int) -> dict[str, Any]:
    """Code usage of one level (int [n] codes in [0, k)).

    utilisation = used codes / k; entropy in bits of the code distribution; perplexity = 2^entropy
    (the effective number of codes); largest_code_share = items in the biggest code / n;
    gini over all k code slots (unused codes count as size 0, so dead codes raise it).
    """
    counts = np.bincount(level_codes, minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    return {
        "k": int(k),
        "used_codes": int((counts > 0).sum()),
        "utilisation": float((counts > 0).sum() / k),
        "entropy_bits": entropy,
        "perplexity": float(2.0**entropy),
        "largest_code_share": float(counts.max() / counts.sum()),
        "gini": gini(counts),
    }


def prefix_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Dense group ids int64 [n] of the prefix tuples (c_1..c_l) for l = 1..L.

    Built level by level (dense id of the previous prefix * (max code + 1) + code, re-densified),
    so the key never overflows however many levels or codes there are.
    """
    groups = []
    current = np.zeros(codes.shape[0], dtype=np.int64)
    for level in range(codes.shape[1]):
        col = codes[:, level]
        key = current * (int(col.max()) + 1) + col
        _, current = np.unique(key, return_inverse=True)
        current = current.astype(np.int64).ravel()
        groups.append(current)
    return groups


def tuple_stats(full_groups: np.ndarray) -> dict[str, Any]:
    """Collisions of the full ID tuple, given its dense group id per item (int [n]).

    unique_ratio = distinct tuples / items (1 = every item has its own ID);
    collided_item_share = items whose tuple is shared with at least one other item;
    items_per_id_{max,p99,mean} over the distinct tuples.
    """
    sizes = np.bincount(full_groups)
    n = int(sizes.sum())
    return {
        "n_items": n,
        "n_distinct_ids": len(sizes),
        "unique_ratio": float(len(sizes) / n),
        "collided_item_share": float(sizes[sizes > 1].sum() / n),
        "items_per_id_max": int(sizes.max()),
        "items_per_id_p99": float(np.percentile(sizes, 99)),
        "items_per_id_mean": float(sizes.mean()),
    }


def consecutive_nmi(codes: np.ndarray) -> list[float]:
    """NMI(level l, level l+1) of the levels' own codes, l = 1..L-1 (sklearn, arithmetic mean).

    1 = level l+1 only renames level l (it adds no information); 0 = independent levels.
    """
    from sklearn.metrics import normalized_mutual_info_score

    return [
        float(normalized_mutual_info_score(codes[:, level], codes[:, level + 1]))
        for level in range(codes.shape[1] - 1)
    ]


# ---------------------------------------------------------------------------------------------
# embedding metrics (seeded sample)
# ---------------------------------------------------------------------------------------------
def _unit_rows(X: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm; all-zero rows stay zero (they have no direction)."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def pairwise_cosine_baseline(unit: np.ndarray) -> float:
    """Mean cosine over all ordered pairs i != j of unit rows [m, d].

    This is exactly the expected value of `group_coherence` under a uniformly random grouping
    with the same group sizes: under random groups a group-mate is a uniformly random other item.
    """
    m = unit.shape[0]
    if m < 2:
        return float("nan")
    total = unit.sum(axis=0, dtype=np.float64)
    self_sim = float((unit.astype(np.float64) ** 2).sum())
    return float((total @ total - self_sim) / (m * (m - 1)))


def group_coherence(unit: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """(coherence, items scored): mean cosine of an item to its OTHER group members.

    For item i in group g with n_g >= 2 members, c_i = mean_{j in g, j != i} cos(x_i, x_j);
    coherence = mean of c_i over items in groups of 2+ (singletons have no group-mate and are
    skipped; the count of scored items is returned). Computed from group sums in O(m d):
    sum_{i in g} c_i = (||S_g||^2 - sum_i ||x_i||^2) / (n_g - 1), S_g = sum of the group's unit rows.
    """
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, len(groups)])
    sorted_unit = unit[order]
    sums = np.add.reduceat(sorted_unit, starts, axis=0, dtype=np.float64)
    self_sims = np.add.reduceat((sorted_unit.astype(np.float64) ** 2).sum(axis=1), starts)
    shared = sizes >= 2
    scored = int(sizes[shared].sum())
    if scored == 0:
        return float("nan"), 0
    per_group = ((sums[shared] ** 2).sum(axis=1) - self_sims[shared]) / (sizes[shared] - 1)
    return float(per_group.sum() / scored), scored


def lift(value: float, baseline: float) -> float:
    """(value - baseline) / (1 - baseline): 0 = chance, 1 = group-mates identical in direction."""
    if not np.isfinite(value) or not np.isfinite(baseline) or baseline >= 1.0:
        return float("nan")
    return float((value - baseline) / (1.0 - baseline))


def reconstruction_stats(X: np.ndarray, X_hat: np.ndarray) -> dict[str, float]:
    """recon_cos = mean_i cos(x_i, x_hat_i) (0 where either is zero);
    recon_rel_error = ||X - X_hat||_F / ||X||_F."""
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1) * np.linalg.norm(X_hat, axis=1)
    dots = (X * X_hat).sum(axis=1)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    denom = np.linalg.norm(X)
    rel = float(np.linalg.norm(X - X_hat) / denom) if denom > 0 else float("nan")
    return {"recon_cos": float(cos.mean()), "recon_rel_error": rel}


def embedding_neighbors(unit: np.ndarray, queries: np.ndarray, n_neighbors: int) -> np.ndarray:
    """int64 [q, n_neighbors]: for each query row index, its nearest other rows by cosine.

    faiss IndexFlatIP (exact) on unit rows. The query itself is removed by index, not by rank,
    so exact duplicates of the query still count as neighbours.
    """
    import faiss

    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(np.ascontiguousarray(unit))
    k = min(n_neighbors + 1, unit.shape[0])
    out = np.empty((len(queries), k - 1), dtype=np.int64)
    for start in range(0, len(queries), SEARCH_BATCH):
        rows = queries[start : start + SEARCH_BATCH]
        _, found = index.search(np.ascontiguousarray(unit[rows]), k)
        for i, (query, hits) in enumerate(zip(rows, found, strict=True)):
            others = hits[hits != query]
            out[start + i] = others[: k - 1]
    return out


def neighbor_prefix_recall(neighbors: np.ndarray, queries: np.ndarray, groups: np.ndarray) -> float:
    """Fraction of the queries' embedding neighbours that share the query's group (code prefix)."""
    return float((groups[neighbors] == groups[queries][:, None]).mean())


def same_group_chance(groups: np.ndarray) -> float:
    """Probability that a uniformly random other item shares an item's group: the recall of
    random neighbours, i.e. the chance level for `neighbor_prefix_recall`."""
    sizes = np.bincount(groups).astype(np.float64)
    m = sizes.sum()
    if m < 2:
        return float("nan")
    return float((sizes * (sizes - 1)).sum() / (m * (m - 1)))


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
def _seeded_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate_ids(
    X: np.ndarray,
    codes: np.ndarray,
    quantizer: BaseQuantizer | None = None,
    *,
    seed: int = 0,
    max_items: int = 50_000,
    n_neighbors: int = 10,
    n_queries: int = DEFAULT_N_QUERIES,
    codebook_sizes: list[int] | None = None,
) -> dict[str, Any]:
    """Quality of semantic IDs `codes` (int [n, L]) of items with embeddings `X` (float [n, d]).

    Returns a JSON-serialisable dict (undefined values are None):

    * ``levels``: one dict per level l = 1..L with
        - usage of the level's own codes: ``k``, ``used_codes``, ``utilisation`` (used / k),
          ``entropy_bits``, ``perplexity`` (2^entropy), ``largest_code_share``, ``gini``
          (over all k slots, unused = 0);
        - prefix tuples (c_1..c_l): ``n_prefixes``, ``prefix_unique_ratio`` (distinct / n),
          ``largest_prefix_share``;
        - ``nmi_next``: NMI between this level's codes and the next level's (None for the last);
        - coherence in the ORIGINAL space (cosine on L2-normalised X; see `group_coherence`):
          ``coherence_code`` groups items by the level's own code (the paper's semantic drift:
          does level-2 code 17 mean the same thing across level-1 codes?), ``coherence_prefix``
          by the prefix tuple; ``coherence_baseline`` is the exact expectation under a random
          grouping with the same group sizes (the mean pairwise cosine); ``*_lift`` =
          (coherence - baseline) / (1 - baseline), 0 = chance, 1 = identical directions;
        - ``neighbor_prefix_recall``: for each sampled query item, the fraction of its
          `n_neighbors` nearest embedding neighbours (exact cosine, faiss IndexFlatIP, the item
          itself excluded) that share its level-l prefix; ``neighbor_prefix_chance`` is the
          same fraction for random neighbours;
        - with a quantizer: ``recon_cos`` (mean cos(x, x_hat_l)) and ``recon_rel_error``
          (||X - X_hat_l||_F / ||X||_F), X_hat_l = inverse_transform(codes, n_levels=l).
    * ``ids``: the full tuple: ``unique_ratio``, ``collided_item_share``, ``n_distinct_ids``,
      ``items_per_id_{max,p99,mean}``, and ``neighbor_recall`` (= the last level's
      ``neighbor_prefix_recall``: the share of embedding neighbours that get the same full ID).
    * ``n_items``, ``dim``, ``n_levels``, ``codebook_sizes`` (+ where they came from) and
      ``sample`` (how many items / queries the embedding metrics used, and the seed).

    Counting metrics use all items; embedding metrics use a seeded sample of `max_items` items
    (neighbours are searched within that sample) and `n_queries` seeded query items.
    `codebook_sizes` is only needed without a quantizer (else k = max code + 1 per level).
    """
    X, codes = _check_inputs(X, codes)
    if quantizer is not None:
        quantizer._check_fitted()
        if quantizer.dim_ != X.shape[1]:
            raise InputError(
                f"X has {X.shape[1]} columns but the {type(quantizer).__name__} was fitted on {quantizer.dim_}"
            )
    sizes, size_source = _resolve_sizes(codes, quantizer, codebook_sizes)
    n, n_levels = codes.shape

    rng = np.random.default_rng(seed)
    sample = _seeded_rows(n, int(max_items), rng)
    X_sample = np.asarray(X[sample], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(X_sample).all(axis=1))
    if len(bad):
        raise InputError(f"X has NaN or inf in row {int(sample[bad[0]])}")
    unit = _unit_rows(X_sample)
    codes_sample = codes[sample]
    m = len(sample)
    queries = _seeded_rows(m, int(n_queries), rng)
    neighbors = (
        embedding_neighbors(unit, queries, n_neighbors) if m >= 2 and n_neighbors > 0 else None
    )

    baseline = pairwise_cosine_baseline(unit)
    all_groups = prefix_groups(codes)
    sample_groups = prefix_groups(codes_sample)
    nmi = consecutive_nmi(codes)

    levels = []
    for level in range(n_levels):
        stats: dict[str, Any] = {"level": level + 1, **usage_stats(codes[:, level], sizes[level])}
        prefix_sizes = np.bincount(all_groups[level])
        stats["n_prefixes"] = len(prefix_sizes)
        stats["prefix_unique_ratio"] = float(len(prefix_sizes) / n)
        stats["largest_prefix_share"] = float(prefix_sizes.max() / n)
        stats["nmi_next"] = nmi[level] if level < n_levels - 1 else None

        own_groups = np.unique(codes_sample[:, level], return_inverse=True)[1].ravel()
        coh_code, _ = group_coherence(unit, own_groups)
        coh_prefix, scored = group_coherence(unit, sample_groups[level])
        stats["coherence_code"] = _none_if_nan(coh_code)
        stats["coherence_prefix"] = _none_if_nan(coh_prefix)
        stats["coherence_baseline"] = _none_if_nan(baseline)
        stats["coherence_code_lift"] = _none_if_nan(lift(coh_code, baseline))
        stats["coherence_prefix_lift"] = _none_if_nan(lift(coh_prefix, baseline))
        stats["coherence_prefix_items"] = scored

        if neighbors is not None:
            stats["neighbor_prefix_recall"] = neighbor_prefix_recall(
                neighbors, queries, sample_groups[level]
            )
            stats["neighbor_prefix_chance"] = _none_if_nan(same_group_chance(sample_groups[level]))
        else:
            stats["neighbor_prefix_recall"] = stats["neighbor_prefix_chance"] = None

        if quantizer is not None:
            X_hat = quantizer.inverse_transform(codes_sample, n_levels=level + 1)
            stats.update(reconstruction_stats(X_sample, X_hat))
        else:
            stats["recon_cos"] = stats["recon_rel_error"] = None
        levels.append(stats)

    ids = tuple_stats(all_groups[-1])
    ids["neighbor_recall"] = levels[-1]["neighbor_prefix_recall"]
    ids["neighbor_recall_chance"] = levels[-1]["neighbor_prefix_chance"]
    return {
        "n_items": int(n),
        "dim": int(X.shape[1]),
        "n_levels": int(n_levels),
        "codebook_sizes": sizes,
        "codebook_sizes_source": size_source,
        "quantizer": None
        if quantizer is None
        else {"kind": quantizer.kind, "params": _jsonable(quantizer.get_params())},
        "sample": {
            "seed": int(seed),
            "max_items": int(max_items),
            "n_items": int(m),
            "n_queries": len(queries),
            "n_neighbors": int(min(n_neighbors, max(m - 1, 0))),
        },
        "levels": levels,
        "ids": ids,
    }


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as plain JSON values (numpy scalars -> Python, anything odd -> repr)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, list | tuple):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
        if not isinstance(value, str | int | float | bool | list | type(None)):
            value = repr(value)
        out[key] = value
    return out
