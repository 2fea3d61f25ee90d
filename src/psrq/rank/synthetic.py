"""SYNTHETIC ranking data with planted structure, in the project's Parquet schemas.

For the ranking tests only; every file written here says "synthetic" in its metadata.
Items belong to hidden clusters; each synthetic user likes one cluster. Positives come from the
user's cluster, negatives from the others, so a model that reads the target's semantic ID (whose
first level is the cluster) against the history can rank well even for cold items, while item
IDs alone cannot generalise to rarely seen items.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from psrq.formats.embeddings import write_embedding_parquet
from psrq.formats.samples import split_path, write_samples
from psrq.formats.sids import JOINT, SID_SIZES_KEY, SemanticIDs

SYNTHETIC_META = {
    b"psrq.synthetic": b"true",
    b"psrq.note": b"SYNTHETIC data with planted clusters (psrq.rank.synthetic)",
}


def make_synthetic_ranking_data(
    root: str | os.PathLike[str],
    *,
    n_users: int = 200,
    n_items: int = 300,
    n_clusters: int = 6,
    events_per_user: int = 24,
    codebook_size: int = 16,
    content_dim: int = 16,
    modalities: tuple[str, ...] = ("text",),
    cold_threshold: int = 5,
    seed: int = 0,
) -> dict[str, Path]:
    """Write samples/{train,valid,test}.parquet, sids.parquet, embeddings/<m>.parquet under `root`.

    Returns the paths. Each synthetic user has `events_per_user` positives, each paired with one
    negative; per user the first 80% of events are train, next 10% valid, last 10% test.
    """
    import pyarrow as pa

    from psrq.artifacts import write_json

    rng = np.random.default_rng(seed)
    root = Path(root)
    item_ids = np.array([f"syn_item_{i}" for i in range(n_items)], dtype=object)
    cluster = rng.integers(0, n_clusters, size=n_items)
    popularity = rng.zipf(1.6, size=n_items).astype(np.float64)
    by_cluster = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    rows: dict[str, list[Any]] = {
        k: [] for k in ("user_id", "item_id", "label", "timestamp", "history", "split")
    }
    for u in range(n_users):
        liked = rng.integers(0, n_clusters)
        pool = by_cluster[liked]
        others = np.flatnonzero(cluster != liked)
        p = popularity[pool] / popularity[pool].sum()
        positives = rng.choice(pool, size=events_per_user, p=p)
        negatives = rng.choice(others, size=events_per_user)
        history: list[str] = []
        n_train, n_valid = int(events_per_user * 0.8), int(events_per_user * 0.1)
        for t in range(events_per_user):
            split = "train" if t < n_train else ("valid" if t < n_train + n_valid else "test")
            for item, label in ((positives[t], 1), (negatives[t], 0)):
                rows["user_id"].append(f"syn_user_{u}")
                rows["item_id"].append(item_ids[item])
                rows["label"].append(label)
                rows["timestamp"].append(1_600_000_000 + u * 10_000 + t)
                rows["history"].append(list(history[-20:]))
                rows["split"].append(split)
            history.append(item_ids[positives[t]])
    split_arr = np.array(rows["split"])
    labels = np.array(rows["label"])
    items = np.array(rows["item_id"], dtype=object)
    train_pos = items[(split_arr == "train") & (labels == 1)]
    names, counts = np.unique(train_pos.astype(str), return_counts=True)
    count_of = dict(zip(names.tolist(), counts.tolist(), strict=True))
    paths: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        sel = np.flatnonzero(split_arr == split)
        train_count = np.array([count_of.get(items[i], 0) for i in sel], dtype=np.int32)
        table = pa.table(
            {
                "user_id": pa.array([rows["user_id"][i] for i in sel], pa.string()),
                "item_id": pa.array([items[i] for i in sel], pa.string()),
                "label": pa.array(labels[sel].astype(np.int8), pa.int8()),
                "timestamp": pa.array(np.array(rows["timestamp"])[sel], pa.int64()),
                "history": pa.array([rows["history"][i] for i in sel], pa.list_(pa.string())),
                "split": pa.array([split] * len(sel), pa.string()),
                "item_train_count": pa.array(train_count, pa.int32()),
                "is_cold": pa.array(train_count < cold_threshold, pa.bool_()),
            }
        ).replace_schema_metadata(SYNTHETIC_META)
        paths[split] = write_samples(split_path(root / "samples", split), table)
    write_json(
        root / "samples" / "meta.json",
        {"synthetic": True, "cold_threshold": cold_threshold, "max_history": 20, "seed": seed},
    )

    # Semantic IDs: level 1 = the planted cluster (per codebook, relabelled), levels 2-3 random.
    all_codes: dict[str, np.ndarray] = {}
    sizes: dict[str, list[int]] = {}
    for cb in (*modalities, JOINT):
        relabel = (
            rng.permutation(codebook_size)[:n_clusters]
            if codebook_size >= n_clusters
            else np.arange(n_clusters)
        )
        all_codes[cb] = np.stack(
            [
                relabel[cluster],
                rng.integers(0, codebook_size, n_items),
                rng.integers(0, codebook_size, n_items),
            ],
            1,
        ).astype(np.int32)
        sizes[cb] = [max(codebook_size, n_clusters), codebook_size, codebook_size]
    synthetic = {k.decode(): v.decode() for k, v in SYNTHETIC_META.items()}
    paths["sids"] = SemanticIDs(
        item_ids,
        list(modalities),
        np.ones((n_items, len(modalities)), dtype=bool),
        all_codes,
        {cb: np.ones(n_items, dtype=bool) for cb in all_codes},
        metadata={**synthetic, SID_SIZES_KEY: json.dumps(sizes)},
    ).write(root / "sids.parquet")

    centers = rng.normal(size=(n_clusters, content_dim)).astype(np.float32)
    for m in modalities:
        X = centers[cluster] + 0.5 * rng.normal(size=(n_items, content_dim)).astype(np.float32)
        paths[f"emb_{m}"] = write_embedding_parquet(
            root / "embeddings" / f"{m}.parquet",
            item_ids.tolist(),
            X,
            dim=content_dim,
            metadata={**synthetic, "psrq.encoder": "synthetic", "psrq.dim": str(content_dim)},
        )
    paths["samples"] = root / "samples"
    paths["embeddings"] = root / "embeddings"
    return paths
