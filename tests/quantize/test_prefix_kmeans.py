"""prefix_kmeans: k-means on PSRQ's Z = [residual || w * prefix] without building Z, pinned to faiss
k-means on the materialised Z (same seed, so the same init). SYNTHETIC data (seeded blobs)."""

from __future__ import annotations

import numpy as np
import pytest

from psrq.quantize.kmeans import nearest_centroid, train_kmeans
from psrq.quantize.prefix_kmeans import prefix_rows, train_prefix_kmeans


def blobs(n: int, d: int, n_blobs: int, seed: int) -> np.ndarray:
    """SYNTHETIC float32 [n, d]: seeded Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, d)).astype(np.float32) * 2
    return centers[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.3


def earlier_levels(
    x: np.ndarray, sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """RQ-style earlier levels: (residual, codes [n, levels], codebooks) for the level after them."""
    residual = x.copy()
    codes = np.empty((len(x), len(sizes)), dtype=np.int64)
    books = []
    for level, k in enumerate(sizes):
        book = train_kmeans(residual, k, seed=10 + level, niter=10)
        codes[:, level], _ = nearest_centroid(residual, book)
        residual -= book[codes[:, level]]
        books.append(book)
    return residual, codes, books


def wide_points(
    residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray], w: float
) -> np.ndarray:
    return np.concatenate([residual, prefix_rows(codes, books, w)], axis=1)


@pytest.mark.parametrize(
    ("earlier", "w"), [([16], 1.0), ([16], 0.5), ([8, 12], 1.0), ([8, 12], 2.0)]
)
def test_same_codes_and_centroids_as_faiss_on_materialised_z(single_faiss_thread, earlier, w):
    x = blobs(3_000, 24, 40, seed=1)
    residual, codes, books = earlier_levels(x, earlier)
    z = wide_points(residual, codes, books, w)
    knobs = {"seed": 7, "niter": 12, "max_points_per_centroid": 256}
    ours = train_prefix_kmeans(residual, codes, books, 20, prefix_weight=w, **knobs)
    reference = train_kmeans(z, 20, **knobs)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=2e-5)
    np.testing.assert_array_equal(nearest_centroid(z, ours)[0], nearest_centroid(z, reference)[0])


def test_subsamples_like_faiss(single_faiss_thread):
    # 2,000 points, k = 8, 50 points per centroid: faiss trains on a seeded 400-point subsample.
    x = blobs(2_000, 16, 12, seed=2)
    residual, codes, books = earlier_levels(x, [6])
    knobs = {"seed": 3, "niter": 10, "max_points_per_centroid": 50}
    ours = train_prefix_kmeans(residual, codes, books, 8, prefix_weight=1.0, **knobs)
    reference = train_kmeans(wide_points(residual, codes, books, 1.0), 8, **knobs)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5)


def test_empty_clusters_are_split_like_faiss(single_faiss_thread):
    # Only 5 distinct points (each repeated) for 8 centroids: the random init picks duplicates,
    # so clusters go empty and faiss's split rule (with its own random generator) redefines them.
    # One iteration only: a split makes twins c * (1 +- eps) that are EXACTLY equidistant from
    # the duplicated points at c, so from the next assignment on float rounding breaks the tie
    # (differently here and in faiss); that is a tie, not a different objective.
    rng = np.random.default_rng(4)
    distinct = rng.normal(size=(5, 6)).astype(np.float32)
    x = distinct[rng.integers(0, 5, 400)]
    residual, codes, books = earlier_levels(x, [3])
    knobs = {"seed": 0, "niter": 1, "max_points_per_centroid": 256}
    ours = train_prefix_kmeans(residual, codes, books, 8, prefix_weight=1.0, **knobs)
    reference = train_kmeans(wide_points(residual, codes, books, 1.0), 8, **knobs)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=2e-5)
    gaps = (
        np.linalg.norm(ours[:, None] - ours[None], axis=-1) / np.linalg.norm(ours, axis=1)[:, None]
    )
    assert (gaps[~np.eye(8, dtype=bool)] < 0.01).any()  # a split happened: twins 2/1024 apart


def test_as_many_points_as_codes_returns_the_points():
    x = blobs(40, 8, 4, seed=5)
    residual, codes, books = earlier_levels(x, [4])
    out = train_prefix_kmeans(
        residual, codes, books, 40, prefix_weight=0.5, seed=0, niter=5, max_points_per_centroid=256
    )
    np.testing.assert_array_equal(
        np.sort(out, axis=0), np.sort(wide_points(residual, codes, books, 0.5), axis=0)
    )
