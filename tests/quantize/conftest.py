"""Fixtures for the quantizer tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def single_faiss_thread():
    """Tiny k-means runs are overhead-bound: with OpenMP threads on a busy machine they run
    3-10x slower (spin-waiting), so a module can ask for one faiss thread; restored afterwards."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
