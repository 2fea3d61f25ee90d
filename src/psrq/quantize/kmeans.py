"""K-means "fit on a seeded sample, assign in chunks": the one place quantizers train k-means.

`training_sample` draws the one seeded sample a quantizer trains on, `train_kmeans` runs faiss
k-means on it, `nearest_centroid` assigns rows in chunks (one BLAS product per chunk). Keeping
this in one seam means a GPU or distributed back end later replaces these functions, not every
quantizer.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from psrq.errors import InputError

if TYPE_CHECKING:
    from psrq.quantize.inputs import EmbeddingSource

DEFAULT_POINTS_PER_CENTROID = 256
DEFAULT_NITER = 25
ASSIGN_BATCH = 32_768
NEAREST_BATCH = 8_192

# row_bias(rows, scores): adds ||c||^2 and any per-row bias to scores in place (see nearest_centroid).
RowBias = Callable[[slice, np.ndarray], None]


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
    for name, value, low in (
        ("seed", seed, 0),
        ("niter", niter, 1),
        ("max_points_per_centroid", max_points_per_centroid, 1),
    ):
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
    if (
        fresh
        and sample.dtype == np.float32
        and sample.flags.c_contiguous
        and sample.flags.writeable
    ):
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
        raise InputError(
            f"{name}: cannot learn {k} codes from {n} items; use a smaller codebook_size or more items"
        )
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
    batch: int = NEAREST_BATCH,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    row_bias: RowBias | None = None,
    distances: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(labels int64 [n], squared distances float32 [n]) of each row's nearest centroid.

    `distances=False` skips the distances (returned as None): the encoders and k-means only
    need the labels, and the distances cost one more pass over every chunk.

    Rows are processed in chunks of `batch`; `transform`, when given, maps each chunk to the
    space the centroids live in, so a wide matrix only ever exists one chunk at a time.
    `row_bias(rows, scores)`, when given, must ADD to scores (float32 [len(rows), k], holding
    -2 x.c) everything else of those rows' squared distances except ||x||^2: ||c||^2 and any
    per-row bias (PSRQ adds the prefix half of its 2d-wide centroids, see
    psrq.quantize.rq_kmeans.prefix_bias); the distances returned then include the bias.

    Distances are ||x||^2 + ||c||^2 - 2 x.c computed with one BLAS matrix product per chunk
    into one preallocated buffer (what faiss's IndexFlatL2 does too; about as fast as it, and
    deterministic for a fixed thread count). Chunks of 8,192 rows keep the [b, k] scores
    cache-resident between the product, the bias and the argmin (measured ~10-20% faster than
    32,768-row chunks). Ties go to the lowest centroid index.
    """
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if assign_on_cuda():
        return _nearest_centroid_cuda(
            x, centroids, batch=batch, transform=transform, row_bias=row_bias, distances=distances
        )
    neg2_t = np.ascontiguousarray(
        np.float32(-2.0) * centroids.T
    )  # [d, k]: the -2 folded into the product
    centroid_sq = np.einsum("kd,kd->k", centroids, centroids)
    n, k = x.shape[0], centroids.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32) if distances else None

    def assign_chunk(start: int, buffer: np.ndarray) -> None:
        rows = slice(start, min(start + batch, n))
        chunk = np.asarray(x[rows], dtype=np.float32)
        if transform is not None:
            chunk = np.asarray(transform(chunk), dtype=np.float32)
        scores = buffer[: len(chunk)]
        np.matmul(chunk, neg2_t, out=scores)
        if row_bias is not None:
            row_bias(rows, scores)
        else:
            scores += centroid_sq
        best = scores.argmin(axis=1)
        labels[rows] = best
        if dists is not None:
            chunk_sq = np.einsum("bd,bd->b", chunk, chunk)
            best_scores = scores[np.arange(len(best)), best] + chunk_sq
            dists[rows] = best_scores if row_bias is not None else np.maximum(best_scores, 0.0)

    run_chunks(assign_chunk, range(0, n, batch), (min(batch, n), k))
    return labels, dists


def run_chunks(
    work: Callable[[int, np.ndarray], None], starts: range, buffer_shape: tuple[int, int]
) -> None:
    """Call work(start, buffer) for every chunk start, on as many threads as BLAS may use.

    Why threads: after each chunk's matrix product come the bias, the argmin and the writes,
    which numpy runs on one core; with a 2-thread BLAS the second core idles through them
    (measured ~30% of a PSRQ k-means iteration). Here each thread takes whole chunks with a
    1-thread BLAS, so everything runs on every core, as in faiss's own search. Each thread
    reuses its own float32 buffer. Chunks are computed exactly as in the serial loop (a
    1-thread OpenBLAS product gives the same floats), so the labels do not depend on threads.
    While this runs, numpy's BLAS is limited to one thread for the whole process.
    """
    threads = min(blas_threads(), len(starts))
    if threads <= 1:
        buffer = np.empty(buffer_shape, dtype=np.float32)
        for start in starts:
            work(start, buffer)
        return
    local = threading.local()

    def run(start: int) -> None:
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = np.empty(buffer_shape, dtype=np.float32)
        work(start, buffer)

    with _blas_controller().limit(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(run, starts):  # re-raises a worker's exception here
            pass


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def blas_threads() -> int:
    """Threads numpy's BLAS would use now (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / cores)."""
    blas = _blas_controller().select(user_api="blas").lib_controllers
    return max([int(c.num_threads) for c in blas] or [1])


def _nearest_centroid_cuda(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    batch: int,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    row_bias: RowBias | None,
    distances: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`nearest_centroid` with the distance products on the GPU (float32, no TF32).

    With a `row_bias` (PSRQ's prefix tables, a numpy callback) the [b, k] products come back to
    the host, where the bias and the argmin run exactly as on the CPU path.
    """
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round x.c to 10 mantissa bits
    c = torch.from_numpy(centroids).cuda()
    c_sq = (c * c).sum(dim=1)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dists = np.empty(n, dtype=np.float32) if distances else None
    for start in range(0, n, batch):
        rows = slice(start, min(start + batch, n))
        chunk = np.asarray(x[rows], dtype=np.float32)
        if transform is not None:
            chunk = np.asarray(transform(chunk), dtype=np.float32)
        xb = torch.from_numpy(np.ascontiguousarray(chunk)).cuda()
        products = xb @ c.T * -2.0
        if row_bias is not None:
            scores = products.cpu().numpy()
            row_bias(rows, scores)
            best = scores.argmin(axis=1)
            best_scores = scores[np.arange(len(best)), best] + np.einsum("bd,bd->b", chunk, chunk)
        else:
            gpu_best_scores, gpu_best = (products + c_sq).min(
                dim=1
            )  # ties: lowest index, as argmin on CPU
            best = gpu_best.cpu().numpy()
            best_scores = np.maximum((gpu_best_scores + (xb * xb).sum(dim=1)).cpu().numpy(), 0.0)
        labels[rows] = best
        if dists is not None:
            dists[rows] = best_scores
    return labels, dists
