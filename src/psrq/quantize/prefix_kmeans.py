"""K-means on PSRQ's wide points Z = [residual || w * prefix] without ever building Z.

At a PSRQ level l >= 1 every training point is z_i = [r_i || w p_i], where the prefix
p_i = sum_{j<l} C_j[id_ij, :d] is a sum of earlier codewords: it takes only as many values as
there are distinct earlier-code tuples. Lloyd's iterations on Z therefore never need the
[m, 2d] matrix:

- assignment: ||z_i - c||^2 = ||r_i - a_c||^2 + ||w p_i - b_c||^2 for a centroid c = [a_c || b_c].
  The first term is one d-wide matrix product (what RQ-KMeans pays); the second is
  w^2 ||p_i||^2 (the same for every c, so it drops out of the argmin) + ||b_c||^2
  - 2 w sum_j T_j[id_ij, c] with small [k_j, k] tables T_j = C_j[:, :d] @ b.T. This is exactly
  how PSRQ encodes (`rq_kmeans.assign_level`), so the training loop calls that function.
- update: a_c = mean of the r_i in cluster c (a sparse indicator product, O(m d));
  b_c = w * mean of the p_i = w * sum_j (counts_j[c] @ C_j[:, :d]) / n_c, with counts_j[c, v] the
  number of points of cluster c whose level-j code is v.

It follows faiss's `Clustering` step for step (same subsample, same random init from
`faiss.rand_perm(seed + 1)`, centroids recomputed after every one of `niter` assignments, empty
clusters split with faiss's rule and random generator), so it has the same objective and the
same fixed point as faiss k-means on the materialised Z, and with the same seed the same
trajectory up to float rounding: the distances are summed in a different order (residual and
prefix halves apart) and the prefix half of a centroid comes from code counts instead of a
running float32 sum, so a point within a rounding error of two centroids may go the other way.
tests/quantize/test_prefix_kmeans.py checks codes and centroids against faiss on Z.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

from psrq.errors import InputError
from psrq.quantize.kmeans import RowBias, import_faiss, nearest_centroid

# faiss's split_clusters perturbs a split centroid by this relative amount (a bit above float16 eps).
_SPLIT_EPS = 1.0 / 1024.0
# Points moved per sparse update: the float64 copy of their residuals stays ~12 MB at d = 384.
MOVE_BATCH = 4_096
# Rows per gather-add of the prefix tables: a 512 x 256 float32 block (512 KB) stays in L2.
BIAS_BLOCK = 512


def faiss_perm(n: int, seed: int) -> np.ndarray:
    """int64 [n]: the permutation faiss's `rand_perm(perm, n, seed)` draws (k-means init, subsample)."""
    faiss = import_faiss()
    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, int(seed))
    return perm.astype(np.int64)


def prefix_bias(
    codes: np.ndarray, codebooks: list[np.ndarray], level: int, prefix_weight: float
) -> RowBias:
    """row_bias for `nearest_centroid`: adds ||C[c]||^2 - 2 w sum_{j<level} T_j[id_j, c] in place.

    ||C[c]||^2 (both halves) is folded into the first table, so a chunk costs one gather-add
    per earlier level into a reused buffer, and no [b, k] temporary is allocated per chunk.
    """
    wide = codebooks[level]
    dim = codebooks[0].shape[1]
    prefix_half = wide[:, dim:]
    tables = [
        np.float32(-2.0 * prefix_weight) * (codebooks[j][:, :dim] @ prefix_half.T)
        for j in range(level)
    ]
    tables[0] += np.einsum("kd,kd->k", wide, wide)  # ||residual half||^2 + ||prefix half||^2
    local = (
        threading.local()
    )  # a small reused gather buffer per thread (nearest_centroid's threads)

    def bias(rows: slice, scores: np.ndarray) -> None:
        gathered = getattr(local, "buffer", None)
        if gathered is None:
            gathered = local.buffer = np.empty((BIAS_BLOCK, scores.shape[1]), dtype=np.float32)
        # Gathered in L2-sized blocks: the table rows are added while the block is still in cache.
        for first in range(0, len(scores), BIAS_BLOCK):
            block = scores[first : first + BIAS_BLOCK]
            buf = gathered[: len(block)]
            block_codes = codes[rows][first : first + BIAS_BLOCK]
            for j, table in enumerate(tables):
                np.take(table, block_codes[:, j], axis=0, out=buf)
                block += buf

    return bias


def prefix_rows(codes: np.ndarray, halves: list[np.ndarray], prefix_weight: float) -> np.ndarray:
    """float32 [len(codes), d]: w * p for the given rows, summed level by level like fit_levels does."""
    w = np.float32(prefix_weight)
    out = w * halves[0][codes[:, 0]]
    for j in range(1, len(halves)):
        out += w * halves[j][codes[:, j]]
    return out


def train_prefix_kmeans(
    residual: np.ndarray,
    codes: np.ndarray,
    halves: list[np.ndarray],
    k: int,
    *,
    prefix_weight: float,
    seed: int,
    niter: int,
    max_points_per_centroid: int,
    name: str = "Z",
) -> np.ndarray:
    """Centroids float32 [k, 2d] of k-means on Z = [residual || w * prefix], Z never built.

    residual: float32 [m, d]; codes: int [m, >= l] whose first l = len(halves) columns are the
    earlier levels' codes; halves: the earlier codebooks' residual halves C_j[:, :d], [k_j, d].
    Same parameters and result as `kmeans.train_kmeans` on Z (see the module docstring).
    """
    n, dim = residual.shape
    if n < k:
        raise InputError(
            f"{name}: cannot learn {k} codes from {n} items; use a smaller codebook_size or more items"
        )
    codes = np.ascontiguousarray(codes[:, : len(halves)], dtype=np.int64)
    if n > k * max_points_per_centroid:  # faiss subsamples the same way, with `seed`
        keep = faiss_perm(n, seed)[: k * max_points_per_centroid]
        residual, codes, n = np.ascontiguousarray(residual[keep]), codes[keep], len(keep)
    init = faiss_perm(n, seed + 1)[:k]
    centroids = np.empty((k, 2 * dim), dtype=np.float32)
    centroids[:, :dim] = residual[init]
    centroids[:, dim:] = prefix_rows(codes[init], halves, prefix_weight)
    if n == k:  # faiss's corner case: the points are the centroids
        return centroids
    sums = ClusterSums(k, dim, [h.shape[0] for h in halves])
    labels = np.full(n, -1, dtype=np.int64)  # -1: not yet in any cluster
    for _ in range(niter):
        new = _assign(residual, codes, halves, centroids, prefix_weight)
        sums.move(residual, codes, np.flatnonzero(new != labels), labels, new)
        labels = new
        sizes = sums.centroids(halves, prefix_weight, out=centroids)
        _split_empty(sizes, centroids, n)
    return centroids


def _assign(
    residual: np.ndarray,
    codes: np.ndarray,
    halves: list[np.ndarray],
    centroids: np.ndarray,
    prefix_weight: float,
) -> np.ndarray:
    """Nearest wide centroid of every point: the very computation PSRQ's encoder runs."""
    dim = residual.shape[1]
    books = [*halves, centroids]  # prefix_bias reads only residual halves of the earlier levels
    bias = prefix_bias(codes, books, len(halves), prefix_weight)
    labels, _ = nearest_centroid(residual, centroids[:, :dim], row_bias=bias, distances=False)
    return labels


class ClusterSums:
    """Per-cluster sums of the residual half (float64) and counts of earlier codes, kept up to date.

    Lloyd's update only needs these: the residual half of centroid c is its residual sum / n_c and
    the prefix half is w * sum_j counts_j[c] @ C_j[:, :d] / n_c. After the first iterations few
    points change cluster, so `move` touches only those (O(moved * d) instead of O(m * d)); float64
    sums keep the running update as exact as faiss's from-scratch float32 sums, or more.
    """

    def __init__(self, k: int, dim: int, prefix_sizes: list[int]) -> None:
        self.k = k
        self.residual = np.zeros((k, dim), dtype=np.float64)
        self.sizes = np.zeros(k, dtype=np.int64)
        self.code_counts = [np.zeros(k * kj, dtype=np.int64) for kj in prefix_sizes]

    def move(
        self,
        residual: np.ndarray,
        codes: np.ndarray,
        moved: np.ndarray,
        old: np.ndarray,
        new: np.ndarray,
    ) -> None:
        """Points `moved` leave cluster old[i] (-1: none) and join new[i]."""
        k = self.k
        for start in range(0, len(moved), MOVE_BATCH):
            idx = moved[start : start + MOVE_BATCH]
            src, dst = old[idx], new[idx]
            had = src >= 0
            cols = np.arange(len(idx))
            # A [k, b] matrix with +1 at (new cluster, point) and -1 at (old cluster, point).
            rows = np.concatenate((dst, src[had]))
            data = np.concatenate(
                (np.ones(len(idx), np.float32), -np.ones(int(had.sum()), np.float32))
            )
            step = sp.csr_matrix(
                (data, (rows, np.concatenate((cols, cols[had])))), shape=(k, len(idx))
            )
            self.residual += step @ residual[idx]  # float32 partial sums, float64 running total
            self.sizes += np.bincount(dst, minlength=k) - np.bincount(src[had], minlength=k)
            for j, counts in enumerate(self.code_counts):
                kj = len(counts) // k
                counts += np.bincount(dst * kj + codes[idx, j], minlength=k * kj)
                counts -= np.bincount(src[had] * kj + codes[idx[had], j], minlength=k * kj)

    def centroids(
        self, halves: list[np.ndarray], prefix_weight: float, *, out: np.ndarray
    ) -> np.ndarray:
        """Write the cluster means into `out` [k, 2d] (zero for empty clusters, as faiss); return float32 sizes."""
        dim = self.residual.shape[1]
        prefix = np.zeros((self.k, dim), dtype=np.float64)
        for counts, half in zip(self.code_counts, halves, strict=True):
            prefix += counts.reshape(self.k, -1).astype(np.float64) @ half.astype(np.float64)
        inv = np.zeros(self.k, dtype=np.float64)
        nonempty = self.sizes > 0
        inv[nonempty] = 1.0 / self.sizes[nonempty]
        out[:, :dim] = self.residual * inv[:, None]
        out[:, dim:] = prefix * (np.float64(prefix_weight) * inv[:, None])
        return self.sizes.astype(np.float32)


def _split_empty(hassign: np.ndarray, centroids: np.ndarray, n: int) -> int:
    """faiss's split_clusters: give each empty cluster half of a large one (same RNG and rule)."""
    empty = np.flatnonzero(hassign == 0)
    if not len(empty):
        return 0
    faiss = import_faiss()
    rng = faiss.RandomGenerator(1234)
    k, width = centroids.shape
    sign = np.where(np.arange(width) % 2 == 0, np.float32(1), np.float32(-1))
    up = np.float32(1) + np.float32(_SPLIT_EPS) * sign  # even coords of the new centroid grow
    down = np.float32(1) - np.float32(_SPLIT_EPS) * sign
    for ci in empty:
        cj = 0
        while True:  # pick a cluster with probability ~ its size (faiss's loop, verbatim)
            p = np.float32(
                (float(hassign[cj]) - 1.0) / float(np.float32(n - k))
            )  # double, then float
            if np.float32(rng.rand_float()) < p:
                break
            cj = (cj + 1) % k
        centroids[ci] = centroids[cj]
        centroids[ci] *= up
        centroids[cj] *= down
        hassign[ci] = hassign[cj] / np.float32(2)
        hassign[cj] -= hassign[ci]
    return len(empty)
