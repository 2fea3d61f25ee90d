"""RQ-KMeans: residual quantization with one k-means codebook per level.

    X_1 = X;  C_l = KMeans(X_l, k_l);  id_l = argmin_c ||X_l - C_l[c]||;  X_{l+1} = X_l - C_l[id_l]

Reconstruction with the first l levels is the sum of the chosen codewords of those levels.

Fit on a seeded sample, assign in chunks: `fit` draws ONE seeded sample of
max(codebook_size) * max_points_per_centroid rows (`EmbeddingSource.sample`) and trains every
level on that sample's residuals, so fitting costs the same for 100k or 10M items; `transform`
streams all rows through the frozen codebooks in chunks.

The level loop below is shared with PSRQ (`psrq.quantize.psrq`): PSRQ is this loop with the
prefix (the part of X the earlier levels explain) appended to the residual, scaled by
`prefix_weight`. At `prefix_weight=0` the prefix is never built and the very same code runs,
which is why PSRQ(prefix_weight=0) gives exactly RQKMeans's codes.

Seeds: the training sample is drawn with `seed`, level l (0-based) runs k-means with `seed + l`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from psrq.errors import ArtifactError, InputError
from psrq.quantize.base import BaseQuantizer, resolve_codebook_sizes
from psrq.quantize.inputs import EmbeddingSource, OnInvalid
from psrq.quantize.kmeans import (
    ASSIGN_BATCH,
    DEFAULT_NITER,
    DEFAULT_POINTS_PER_CENTROID,
    check_kmeans_params,
    nearest_centroid,
    train_kmeans,
    training_sample,
)
from psrq.quantize.prefix_kmeans import prefix_bias, train_prefix_kmeans
from psrq.quantize.registry import DEFAULT_CODEBOOK_SIZE

# ---- the shared level loop ----------------------------------------------------------------------
# PSRQ's level l >= 1 assigns in the concatenated space:
#     argmin_c ||r - C[c, :d]||^2 + ||w p - C[c, d:]||^2
# and the prefix p = sum_{j<l} C_j[id_j, :d] is a sum of codewords, so
#     ||w p - C[c, d:]||^2 = w^2 ||p||^2 - 2 w sum_{j<l} T_j[id_j, c] + ||C[c, d:]||^2,
# with T_j = C_j[:, :d] @ C[:, d:].T a small [k_j, k_l] table. The first term is the same for
# every c (it drops out of the argmin), so assignment costs one d-wide matrix product plus
# table look-ups (`prefix_kmeans.prefix_bias`): no 2d-wide matrix is ever built, and PSRQ
# encodes about as fast as RQ-KMeans. Training uses the same identity (and per-cluster counts
# of earlier codes for the centroid update), so k-means on Z_l = [residual || w * prefix]
# runs without Z_l too (`psrq.quantize.prefix_kmeans`).


def assign_level(
    residual: np.ndarray,
    codes: np.ndarray,
    codebooks: list[np.ndarray],
    level: int,
    prefix_weight: float,
) -> np.ndarray:
    """Labels int64 [n] of level `level` for rows whose earlier codes are codes[:, :level]."""
    codebook = codebooks[level]
    dim = residual.shape[1]
    if codebook.shape[1] == dim:  # level 0, or no prefix (RQ-KMeans, PSRQ at weight 0)
        labels, _ = nearest_centroid(residual, codebook, distances=False)
    else:
        bias = prefix_bias(codes, codebooks, level, prefix_weight)
        labels, _ = nearest_centroid(residual, codebook[:, :dim], row_bias=bias, distances=False)
    return labels


def fit_levels(
    sample: np.ndarray,
    sizes: list[int],
    *,
    prefix_weight: float,
    seed: int,
    niter: int,
    max_points_per_centroid: int,
    name: str,
    desc: str,
) -> list[np.ndarray]:
    """Train one codebook per level on `sample` (float32 [m, d], CONSUMED: overwritten in place).

    Level l uses k-means seed `seed + l`. Returns float32 codebooks: [k_0, d] for level 0, then
    [k_l, 2d] with a prefix (prefix_weight > 0) or [k_l, d] without.

    Memory: the sample itself becomes the running residual and nothing else of its size is made.
    With a prefix, levels >= 1 run k-means on Z = [residual || w * prefix] without building Z
    (`psrq.quantize.prefix_kmeans`): the prefix is a sum of earlier codewords, so it is known
    from the earlier codes, and each Lloyd iteration costs one d-wide matrix product, as in
    RQ-KMeans.
    """
    codes = np.empty((len(sample), len(sizes)), dtype=np.int64)
    codebooks: list[np.ndarray] = []
    residual = sample
    dim = sample.shape[1]
    for level, k in enumerate(tqdm(sizes, desc=desc, unit="level", disable=None, leave=False)):
        knobs = {
            "seed": seed + level,
            "niter": niter,
            "max_points_per_centroid": max_points_per_centroid,
        }
        if level == 0 or prefix_weight == 0:
            codebook = train_kmeans(residual, k, name=f"{name} (level {level})", **knobs)
        else:
            halves = [c[:, :dim] for c in codebooks]
            codebook = train_prefix_kmeans(
                residual,
                codes,
                halves,
                k,
                prefix_weight=prefix_weight,
                name=f"{name} (level {level})",
                **knobs,
            )
        codebooks.append(codebook)
        # Assign with the same function transform uses, so the sample's codes match transform's.
        codes[:, level] = assign_level(residual, codes, codebooks, level, prefix_weight)
        if level + 1 < len(sizes):
            update_residual(residual, codebook, codes[:, level])
    return codebooks


def update_residual(residual: np.ndarray, codebook: np.ndarray, labels: np.ndarray) -> None:
    """residual -= C[labels, :d], in place and in chunks (no [n, d] temporary)."""
    dim = residual.shape[1]
    for start in range(0, residual.shape[0], ASSIGN_BATCH):
        rows = slice(start, start + ASSIGN_BATCH)
        residual[rows] -= codebook[labels[rows], :dim]


def encode_levels(
    batch: np.ndarray, codebooks: list[np.ndarray], prefix_weight: float
) -> np.ndarray:
    """Codes int32 [b, n_levels] of float32 rows [b, d], level by level through frozen codebooks."""
    residual = np.array(batch, dtype=np.float32, order="C", copy=True)  # batch may be the caller's
    codes = np.empty((batch.shape[0], len(codebooks)), dtype=np.int64)
    for level, codebook in enumerate(codebooks):
        codes[:, level] = assign_level(residual, codes, codebooks, level, prefix_weight)
        if level + 1 < len(codebooks):
            update_residual(residual, codebook, codes[:, level])
    return codes.astype(np.int32)


def decode_levels(
    codes: np.ndarray, codebooks: list[np.ndarray], n_levels: int, dim: int
) -> np.ndarray:
    """float32 [n, d]: sum over the first `n_levels` levels of the chosen codewords' residual half."""
    out = np.zeros((codes.shape[0], dim), dtype=np.float32)
    for level in range(n_levels):
        out += codebooks[level][codes[:, level], :dim]
    return out


def check_on_invalid(value: Any, owner: str) -> None:
    if value not in ("raise", "drop"):
        raise InputError(f"{owner}: on_invalid must be 'raise' or 'drop', got {value!r}")


def warn_dropped(source: EmbeddingSource, owner: str) -> None:
    """Say how many NaN/inf rows on_invalid='drop' skipped (they get no codes from fit)."""
    import warnings

    dropped = getattr(source, "dropped_rows", None)
    if dropped is not None and len(dropped):
        shown = ", ".join(str(int(r)) for r in dropped[:10])
        more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
        warnings.warn(
            f"{owner}: fitted on {source.n_rows} valid rows of {source.name}; dropped "
            f"{len(dropped)} row(s) with NaN or inf: rows {shown}{more}",
            stacklevel=3,
        )


def codebooks_state(codebooks: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"codebook_{level}": c for level, c in enumerate(codebooks)}


def codebooks_from_state(
    state: dict[str, Any], sizes: list[int], widths: list[int], owner: str
) -> list[np.ndarray]:
    """Codebooks read back from state.npz, checked against the manifest's sizes and widths."""
    codebooks = []
    for level, (k, width) in enumerate(zip(sizes, widths, strict=True)):
        key = f"codebook_{level}"
        if key not in state:
            raise ArtifactError(f"{owner} state has no {key}")
        c = np.asarray(state[key])
        if c.shape != (k, width) or not np.issubdtype(c.dtype, np.floating):
            raise ArtifactError(
                f"{owner} {key} has shape {c.shape} ({c.dtype}), expected float [{k}, {width}]"
            )
        codebooks.append(np.ascontiguousarray(c, dtype=np.float32))
    return codebooks


# ---- the estimator ------------------------------------------------------------------------------


class RQKMeans(BaseQuantizer):
    """Residual k-means quantizer: `n_levels` codebooks, each trained on the previous residual.

    Parameters (keyword-only):
        n_levels: number of levels (codes per item). Default 3 (the paper's setting).
        codebook_size: codes per level; an int, or a list with one size per level.
        seed: seeds the training sample (seed) and level l's k-means (seed + l).
        niter: k-means iterations per level.
        max_points_per_centroid: the fit sample has max(codebook_size) * this many rows.
        on_invalid: "raise" (default) names rows with NaN/inf; "drop" fits on the valid rows.

    Example::

        q = RQKMeans(n_levels=3, codebook_size=256, seed=0).fit(X)   # X float [n, d]
        codes = q.transform(X)                                        # int32 [n, 3]
        X_hat = q.inverse_transform(codes, n_levels=2)                # float32 [n, d]
    """

    kind = "RQKMeans"

    def __init__(
        self,
        *,
        n_levels: int = 3,
        codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE,
        seed: int = 0,
        niter: int = DEFAULT_NITER,
        max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.seed = seed
        self.niter = niter
        self.max_points_per_centroid = max_points_per_centroid
        self.on_invalid = on_invalid

    # The prefix weight is 0 here by definition; PSRQ overrides this one method.
    def _prefix_weight(self) -> float:
        return 0.0

    def _level_count(self) -> int:
        return int(self.n_levels)

    def _check_params(self) -> list[int]:
        owner = type(self).__name__
        check_kmeans_params(
            seed=self.seed,
            niter=self.niter,
            max_points_per_centroid=self.max_points_per_centroid,
            owner=owner,
        )
        check_on_invalid(self.on_invalid, owner)
        return resolve_codebook_sizes(self.codebook_size, self._level_count())

    def _fit(self, source: EmbeddingSource) -> None:
        sizes = self._check_params()
        warn_dropped(source, type(self).__name__)
        self.codebooks_ = fit_levels(
            # passed without a name: fit_levels reuses the sample's memory as its residual
            training_sample(
                source,
                max(sizes),
                seed=int(self.seed),
                max_points_per_centroid=int(self.max_points_per_centroid),
            ),
            sizes,
            prefix_weight=self._prefix_weight(),
            seed=int(self.seed),
            niter=int(self.niter),
            max_points_per_centroid=int(self.max_points_per_centroid),
            name=source.name,
            desc=f"{type(self).__name__} fit",
        )
        self.codebook_sizes_ = sizes

    def _encode(self, batch: np.ndarray) -> np.ndarray:
        return encode_levels(batch, self.codebooks_, self._prefix_weight())

    def _decode(self, codes: np.ndarray, n_levels: int) -> np.ndarray:
        return decode_levels(codes, self.codebooks_, n_levels, self.dim_)

    def _state(self) -> dict[str, Any]:
        return codebooks_state(self.codebooks_)

    def _codebook_widths(self) -> list[int]:
        wide = 2 * self.dim_ if self._prefix_weight() != 0 else self.dim_
        return [self.dim_] + [wide] * (len(self.codebook_sizes_) - 1)

    def _set_state(self, state: dict[str, Any]) -> None:
        self.codebooks_ = codebooks_from_state(
            state, self.codebook_sizes_, self._codebook_widths(), type(self).__name__
        )
