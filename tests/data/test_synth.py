"""The SYNTHETIC catalogue: structure is recoverable, runs are reproducible, files are labelled."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from psrq.data.parquet_source import load_synth_dir
from psrq.data.protocol import ProtocolConfig, build_samples
from psrq.data.synth import SynthConfig, generate
from psrq.errors import ConfigError


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n_items=3000, n_users=300, seed=1), out, progress=False)
    return out


def _emb(path):
    t = pq.read_table(path)
    return np.asarray(t.column("embedding").combine_chunks().flatten()).reshape(t.num_rows, -1)


def _centroid_gap(x: np.ndarray, groups: np.ndarray) -> float:
    """Mean cosine to same-group items minus mean cosine to other-group items (> 0 = recoverable)."""
    x = x - x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    same = groups[:, None] == groups[None, :]
    np.fill_diagonal(same, False)
    off = ~same
    np.fill_diagonal(off, False)
    return float(sim[same].mean() - sim[off].mean())


def test_genres_are_shared_and_factors_are_modality_specific(catalogue):
    items = pq.read_table(catalogue / "items.parquet")
    text, audio = (
        _emb(catalogue / "embeddings" / "text.parquet"),
        _emb(catalogue / "embeddings" / "audio.parquet"),
    )
    genre = np.asarray(items.column("genre").to_pylist())
    language = np.asarray(items.column("language").to_pylist())
    timbre = np.asarray(items.column("timbre").to_pylist())
    # same-genre items are closer than cross-genre ones in both modalities
    assert _centroid_gap(text, genre) > 0.2 and _centroid_gap(audio, genre) > 0.2
    # language shows in text only, timbre in audio only
    assert _centroid_gap(text, language) > 5 * max(_centroid_gap(audio, language), 0.005)
    assert _centroid_gap(audio, timbre) > 5 * max(_centroid_gap(text, timbre), 0.005)


def test_files_are_labelled_synthetic_and_in_schema(catalogue):
    for f in (
        "items.parquet",
        "interactions.parquet",
        "embeddings/text.parquet",
        "embeddings/audio.parquet",
    ):
        assert pq.read_schema(catalogue / f).metadata[b"psrq.synthetic"] == b"true"
    schema = pq.read_schema(catalogue / "embeddings" / "text.parquet")
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[64]"
    assert schema.metadata[b"psrq.dim"] == b"64"
    items = pq.read_table(catalogue / "items.parquet")
    assert items.column("item_id")[0].as_py().startswith("synth-")
    assert items.column("text")[0].as_py().startswith("SYNTHETIC")
    assert json.loads((catalogue / "synth.json").read_text())["synthetic"] is True


def test_same_seed_same_bytes_other_seed_differs(catalogue, tmp_path):
    generate(SynthConfig(n_items=3000, n_users=300, seed=1), tmp_path / "a", progress=False)
    generate(SynthConfig(n_items=3000, n_users=300, seed=2), tmp_path / "b", progress=False)
    for f in ("items.parquet", "interactions.parquet", "embeddings/audio.parquet"):
        assert pq.read_table(tmp_path / "a" / f).equals(pq.read_table(catalogue / f))
        assert not pq.read_table(tmp_path / "b" / f).equals(pq.read_table(catalogue / f))


def test_interactions_depend_on_both_modalities_and_have_cold_items(catalogue):
    data = load_synth_dir(catalogue)
    assert (
        data.synthetic
        and data.default_label_rule == "explicit"
        and set(data.embeddings) == {"text", "audio"}
    )
    items = {
        r["item_id"]: r
        for r in data.items.select(
            ["item_id", "language", "timbre", "release_timestamp"]
        ).to_pylist()
    }
    rows = data.interactions.to_pylist()
    # no interaction before the item's release
    assert all(r["timestamp"] >= items[r["item_id"]]["release_timestamp"] for r in rows)
    samples = build_samples(data, ProtocolConfig())
    stats = samples.stats["splits"]
    assert 0.2 < stats["train"]["positive_rate"] < 0.8
    assert stats["test"]["cold_share"] > 0.3 and stats["test"]["new_items"] > 0


def test_labels_follow_both_modality_specific_preferences(catalogue):
    """A text-side match (language) and an audio-side match (timbre) each raise the like rate."""
    items = {
        r["item_id"]: r
        for r in pq.read_table(catalogue / "items.parquet")
        .select(["item_id", "language", "timbre"])
        .to_pylist()
    }
    users = {r["user_id"]: r for r in pq.read_table(catalogue / "users.parquet").to_pylist()}
    inter = pq.read_table(catalogue / "interactions.parquet").to_pylist()
    for item_key, user_key in (("language", "pref_language"), ("timbre", "pref_timbre")):
        match = np.array(
            [items[r["item_id"]][item_key] == users[r["user_id"]][user_key] for r in inter]
        )
        label = np.array([r["label"] for r in inter])
        assert label[match].mean() - label[~match].mean() > 0.1, item_key


def test_bad_config():
    with pytest.raises(ConfigError, match="n_items must be >= 1"):
        SynthConfig(n_items=0)
