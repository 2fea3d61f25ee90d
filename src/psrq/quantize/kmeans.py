"""The one place faiss is called: k-means "fit on a seeded sample, assign in chunks".

Keeping it in one seam means a GPU or distributed back end later replaces these two
functions, not every quantizer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from psrq.errors import InputError

DEFAULT_POINTS_PER_CENTROID = 256
DEFAULT_NITER = 25
ASSIGN_BATCH = 32_768


def train_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int,
    niter: int = DEFAULT_NITER,
    max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
    name: str = "X",
) -> np.ndarray:
    """Centroids float32 [k, d] of faiss k-means on `x` (float32 [n, d]), deterministic for a seed.

    `x` should already be the training sample (see `EmbeddingSource.sample`); faiss subsamples
    again to `k * max_points_per_centroid` rows with the same seed if it is larger.
    Single-threaded faiss is not required for determinism: faiss k-means with a fixed seed
    gives identical centroids for identical input on the same machine.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n < k:
        raise InputError(f"{name}: cannot learn {k} codes from {n} items; use a smaller codebook_size or more items")
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=int(seed),
        max_points_per_centroid=int(max_points_per_centroid),
        min_points_per_centroid=1,
        spherical=False,
        verbose=False,
    )
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def nearest_centroid(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    batch: int = ASSIGN_BATCH,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [n], squared distances float32 [n]) of each row's nearest centroid.

    Rows are processed in chunks of `batch`; `transform`, when given, maps each chunk to the
    space the centroids live in (e.g. PSRQ's [residual || prefix]), so the wide matrix only
    ever exists one chunk at a time.
    """
    import faiss

    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch):
        chunk = np.ascontiguousarray(x[start : start + batch], dtype=np.float32)
        if transform is not None:
            chunk = np.ascontiguousarray(transform(chunk), dtype=np.float32)
        d, i = index.search(chunk, 1)
        labels[start : start + len(chunk)] = i[:, 0]
        dists[start : start + len(chunk)] = d[:, 0]
    return labels, dists
