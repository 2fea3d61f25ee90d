"""Shared fixtures. Data sets the tests use are real (carried in the repo) or labelled synthetic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# faiss, torch and sklearn may share one OpenMP runtime; its default busy-waiting makes small
# k-means fits many times slower on a loaded 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
AUDIO_CLIPS = REPO / "data" / "audio-clips"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def audio_clips_dir() -> Path:
    return AUDIO_CLIPS


@pytest.fixture
def synthetic_blobs() -> np.ndarray:
    """SYNTHETIC: 2,000 x 32 float32 points in 20 Gaussian blobs (seeded), for quantizer unit tests."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 32)).astype(np.float32) * 3
    labels = rng.integers(0, 20, size=2000)
    return (centers[labels] + rng.normal(size=(2000, 32)).astype(np.float32) * 0.5).astype(
        np.float32
    )
