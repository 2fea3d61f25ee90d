"""Fixtures for the ranking tests: SYNTHETIC data sets with planted clusters (psrq.rank.synthetic)."""

from __future__ import annotations

import pytest
import torch

from psrq.rank.synthetic import make_synthetic_ranking_data


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # the test machine is shared; small models gain nothing from more


@pytest.fixture(scope="session")
def syn_data(tmp_path_factory):
    """SYNTHETIC: 60 users, 120 items, text + audio SIDs and embeddings, paths dict."""
    root = tmp_path_factory.mktemp("syn_rank")
    return make_synthetic_ranking_data(
        root, n_users=60, n_items=120, events_per_user=12, modalities=("text", "audio"), seed=0
    )


@pytest.fixture(scope="session")
def syn_loaded(syn_data):
    from psrq.rank.train import load_ranking_data

    return load_ranking_data(
        syn_data["samples"], sids=syn_data["sids"], embeddings=syn_data["embeddings"]
    )
