"""SYNTHETIC serving artifacts for tests and benchmarks: a quantizer, rankers, items, embeddings.

    paths = build_service_artifacts("tmp/serve", n_items=300)
    # paths["quantizer"], paths["rankers"]["MCCA"], paths["items"], paths["embeddings"]

Samples come from `psrq.rank.synthetic` (planted clusters); text (384-d, the width of MiniLM)
and audio (200-d, the width of musicnn) embeddings are drawn around per-cluster centres, so the
real encoders' vectors fit the quantizer too. Everything written is labelled SYNTHETIC.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

DIMS = {"text": 384, "audio": 200}
SYNTHETIC_META = {b"psrq.synthetic": b"true", b"psrq.note": b"SYNTHETIC (psrq.serve.synthetic)"}


def write_embeddings(path: Path, item_ids: list[str], X: np.ndarray) -> None:
    from psrq.formats.embeddings import write_embedding_parquet

    meta = {k.decode(): v.decode() for k, v in SYNTHETIC_META.items()}
    write_embedding_parquet(
        path, item_ids, X, dim=X.shape[1], metadata={**meta, "psrq.encoder": "synthetic"}
    )


def build_service_artifacts(
    root: str | os.PathLike[str],
    *,
    n_items: int = 300,
    n_users: int = 150,
    codebook_size: int = 8,
    n_levels: int = 2,
    models: tuple[str, ...] = ("MCCA", "DIN", "VBPR"),
    modalities: tuple[str, ...] = ("text", "audio"),
    epochs: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from psrq.artifacts import write_parquet
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.rank.synthetic import make_synthetic_ranking_data
    from psrq.rank.train import TrainConfig, load_ranking_data, train_model

    root = Path(root)
    data = make_synthetic_ranking_data(
        root / "data", n_users=n_users, n_items=n_items, seed=seed, modalities=("text",)
    )
    planted = pq.read_table(data["sids"])
    item_ids = [str(v) for v in planted.column("item_id").to_pylist()]
    cluster = np.array([codes[0] for codes in planted.column("sid_text").to_pylist()])
    rng = np.random.default_rng(seed + 1)
    embeddings = root / "embeddings"
    inputs = {}
    for m, d in ((m, DIMS[m]) for m in modalities):
        centres = rng.normal(size=(cluster.max() + 1, d)).astype(np.float32)
        X = centres[cluster] + 0.6 * rng.normal(size=(len(item_ids), d)).astype(np.float32)
        write_embeddings(embeddings / f"{m}.parquet", item_ids, X)
        inputs[m] = read_embedding_parquet(
            embeddings / f"{m}.parquet", m
        )  # carries the SYNTHETIC label
    titles = [f"SYNTHETIC track {i} (cluster {c})" for i, c in enumerate(cluster.tolist())]
    write_parquet(
        root / "items.parquet",
        pa.table({"item_id": item_ids, "name": titles}).replace_schema_metadata(SYNTHETIC_META),
    )

    mq = MultimodalQuantizer(
        method="PSRQ", params={"codebook_size": codebook_size, "n_levels": n_levels}, seed=seed
    )
    sids = mq.fit_transform(inputs, disambiguate=True)
    sids.write(root / "sids.parquet")
    mq.save(root / "quantizer")

    rankers = {}
    for name in models:
        config = TrainConfig(
            model=name, dim=16, epochs=epochs, patience=0, batch_size=256, seed=seed, min_id_count=1
        )
        ranking = load_ranking_data(
            data["samples"],
            sids=root / "sids.parquet",
            embeddings=embeddings if name == "VBPR" else None,
            max_history=20,
            min_id_count=1,
        )
        train_model(ranking, config, out=root / "rank" / name, progress=False)
        rankers[name] = root / "rank" / name / "model"
    return {
        "root": root,
        "quantizer": root / "quantizer",
        "rankers": rankers,
        "items": root / "items.parquet",
        "embeddings": embeddings,
        "samples": data["samples"],
        "item_ids": item_ids,
    }
