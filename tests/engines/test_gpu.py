"""GPU paths. Each test skips cleanly without a GPU (none was lent when they were written, so
they have not run on one yet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psrq.quantize.kmeans import faiss_gpu_count, nearest_centroid, train_kmeans

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


def blobs(n: int = 5000, d: int = 32, seed: int = 0) -> np.ndarray:
    """SYNTHETIC Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d)) * 3
    return (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_faiss_gpu_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PSRQ_FAISS_GPU", "0")
    assert faiss_gpu_count() == 0


@pytest.mark.skipif(
    faiss_gpu_count() == 0, reason="faiss without GPU support (pip install 'psrq[gpu]') or no GPU"
)
def test_faiss_gpu_kmeans_is_seeded_and_close_to_cpu(monkeypatch):
    x = blobs()
    gpu_a, gpu_b = train_kmeans(x, 40, seed=0), train_kmeans(x, 40, seed=0)
    np.testing.assert_array_equal(gpu_a, gpu_b)
    monkeypatch.setenv("PSRQ_FAISS_GPU", "0")
    cpu = train_kmeans(x, 40, seed=0)
    # Same objective within 1%: GPU k-means is not bit-identical to CPU k-means.
    _, d_gpu = nearest_centroid(x, gpu_a)
    _, d_cpu = nearest_centroid(x, cpu)
    assert abs(d_gpu.mean() - d_cpu.mean()) / d_cpu.mean() < 0.01


@needs_cuda
def test_cuda_assignment_matches_cpu_codes(monkeypatch):
    x = blobs(20_000)
    c = train_kmeans(x, 64, seed=1)
    cpu_labels, cpu_d = nearest_centroid(x, c)
    monkeypatch.setenv("PSRQ_ASSIGN_DEVICE", "cuda")
    gpu_labels, gpu_d = nearest_centroid(x, c, batch=4096)
    # Stated tolerance: at most 0.01% of rows may flip between near-tied centroids.
    assert (gpu_labels != cpu_labels).mean() <= 1e-4
    np.testing.assert_allclose(gpu_d, cpu_d, rtol=1e-4, atol=1e-4)
