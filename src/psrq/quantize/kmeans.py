"""K-means "fit on a seeded sample, assign in chunks": the one place quantizers train k-means.

`training_sample` draws the one seeded sample a quantizer trains on, `train_kmeans` runs faiss
k-means on it, `nearest_centroid` assigns rows in chunks (one BLAS product per chunk). Keeping
this in one seam means a GPU or distributed back end later replaces these functions, not every
quantizer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from psrq.errors import InputError

if TYPE_CHECKING:
    from psrq.quantize.inputs import EmbeddingSource

DEFAULT_POINTS_PER_CENTROID = 256
DEFAULT_NITER = 25
ASSIGN_BATCH = 32_768


def import_faiss() -> Any:
    """Import faiss, asking its OpenMP runtime to sleep rather than spin while waiting.

    libgomp's default busy-waiting makes faiss k-means 10-40x slower whenever the cores are
    shared (measured: 5 small PSRQ fits took 0.6 s passive vs 17.9 s spinning with 2 threads on
    2 busy cores); sleeping costs next to nothing on an idle machine. This only takes effect if
    faiss is not imported yet, and a user's own OMP_WAIT_POLICY always wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


def faiss_gpu_count() -> int:
    """GPUs faiss can use: 0 with faiss-cpu (the default install), or when PSRQ_FAISS_GPU=0.

    With `pip install 'psrq[gpu]'` (faiss-gpu-cu12) and a visible GPU, `train_kmeans` trains on
    it. GPU k-means is deterministic for a seed on one GPU model, but its centroids are not
    bit-identical to the CPU ones (different summation order), so codes may differ in near-ties.
    """
    if os.environ.get("PSRQ_FAISS_GPU", "1") == "0":
        return 0
    get = getattr(import_faiss(), "get_num_gpus", None)
    return int(get()) if get is not None else 0


def assign_on_cuda() -> bool:
    """Opt-in CUDA assignment (PSRQ_ASSIGN_DEVICE=cuda and torch sees a GPU).

    Off by default: a GPU matrix product sums in another order than BLAS, so rows whose two
    nearest centroids are within float32 rounding may get the other code, and the engines promise
    byte-identical codes. Turn it on when throughput matters more than that promise.
    """
    if os.environ.get("PSRQ_ASSIGN_DEVICE", "cpu") != "cuda":
        return False
    import torch

    return torch.cuda.is_available()


def check_kmeans_params(*, seed: int, niter: int, max_points_per_centroid: int, owner: str) -> None:
    """Validate the k-means knobs every k-means quantizer shares; `owner` names the estimator."""
    for name, value, low in (("seed", seed, 0), ("niter", niter, 1), ("max_points_per_centroid", max_points_per_centroid, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InputError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    # faiss stores the seed in a C int; level l uses seed + l, so leave head-room.
    if seed > 2**31 - 1024:
        raise InputError(f"{owner}: seed must be < {2**31 - 1024}, got {seed}")


def training_sample(
    source: EmbeddingSource,
    max_k: int,
    *,
    seed: int,
    max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
) -> np.ndarray:
    """The one seeded sample every level of a quantizer trains on: float32 [m, d], owned by the caller.

    m = min(n_rows, max_k * max_points_per_centroid), so fit cost stays flat as the catalogue
    grows. Raises InputError when there are fewer rows than the largest codebook.
    """
    if source.n_rows < max_k:
        raise InputError(
            f"{source.name}: cannot learn {max_k} codes from {source.n_rows} items; "
            "use a smaller codebook_size or more items"
        )
    from psrq.quantize.inputs import ArraySource, ParquetSource

    sample = source.sample(max_k * max_points_per_centroid, seed)
    # Quantizers train in place on the sample. The built-in sources return fresh arrays; a
    # user-written source might hand back its own memory, so that one is copied.
    fresh = isinstance(source, ArraySource | ParquetSource)
    if fresh and sample.dtype == np.float32 and sample.flags.c_contiguous and sample.flags.writeable:
        return sample
    return np.array(sample, dtype=np.float32, order="C", copy=True)


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
    faiss = import_faiss()

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
        gpu=faiss_gpu_count() > 0,
    )
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def nearest_centroid(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    batch: int = ASSIGN_BATCH,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    row_bias: Callable[[slice], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [n], squared distances float32 [n]) of each row's nearest centroid.

    Rows are processed in chunks of `batch`; `transform`, when given, maps each chunk to the
    space the centroids live in, so a wide matrix only ever exists one chunk at a time.
    `row_bias(rows)`, when given, returns float32 [len(rows), k] added to the squared distances
    of those rows before the argmin (PSRQ uses it for the prefix half of its 2d-wide centroids,
    see psrq.quantize.rq_kmeans); the distances returned then include it.

    Distances are ||x||^2 + ||c||^2 - 2 x.c computed with one BLAS matrix product per chunk
    (what faiss's IndexFlatL2 does too; measured ~1.3-2.5x faster than it on 2 shared cores,
    and deterministic for a fixed thread count). Ties go to the lowest centroid index.
    """
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if assign_on_cuda():
        return _nearest_centroid_cuda(x, centroids, batch=batch, transform=transform, row_bias=row_bias)
    centroid_sq = np.einsum("kd,kd->k", centroids, centroids)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch):
        rows = slice(start, min(start + batch, n))
        chunk = np.asarray(x[rows], dtype=np.float32)
        if transform is not None:
            chunk = np.asarray(transform(chunk), dtype=np.float32)
        scores = chunk @ centroids.T  # [b, k]
        scores *= -2.0
        scores += centroid_sq
        if row_bias is not None:
            scores += row_bias(rows)
        best = scores.argmin(axis=1)
        labels[rows] = best
        chunk_sq = np.einsum("bd,bd->b", chunk, chunk)
        best_scores = scores[np.arange(len(best)), best] + chunk_sq
        dists[rows] = best_scores if row_bias is not None else np.maximum(best_scores, 0.0)
    return labels, dists


def _nearest_centroid_cuda(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    batch: int,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    row_bias: Callable[[slice], np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """`nearest_centroid` with the distance products on the GPU (float32, no TF32)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round x.c to 10 mantissa bits
    c = torch.from_numpy(centroids).cuda()
    c_sq = (c * c).sum(dim=1)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch):
        rows = slice(start, min(start + batch, n))
        chunk = np.asarray(x[rows], dtype=np.float32)
        if transform is not None:
            chunk = np.asarray(transform(chunk), dtype=np.float32)
        xb = torch.from_numpy(np.ascontiguousarray(chunk)).cuda()
        scores = xb @ c.T * -2.0 + c_sq
        if row_bias is not None:
            scores += torch.from_numpy(np.ascontiguousarray(row_bias(rows), dtype=np.float32)).cuda()
        best_scores, best = scores.min(dim=1)  # ties: lowest index, as argmin on CPU
        best_scores = best_scores + (xb * xb).sum(dim=1)
        labels[rows] = best.cpu().numpy()
        out = best_scores.cpu().numpy()
        dists[rows] = out if row_bias is not None else np.maximum(out, 0.0)
    return labels, dists
