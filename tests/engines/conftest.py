"""A real local Ray for the engine tests: started once per session, bounded, always shut down."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="session")
def ray_local():
    """Ray on 2 CPUs with a 200 MB object store and no dashboard (the machine is shared)."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs the psrq[ray] extra")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2, object_store_memory=200 << 20, include_dashboard=False, log_to_driver=False
    )
    yield ray
    ray.shutdown()


def _list_column(rng: np.random.Generator, n: int, d: int, null_share: float) -> pa.Array:
    x = rng.normal(size=(n, d)).astype(np.float32)
    null = rng.random(n) < null_share
    return pa.array(
        [None if z else row.tolist() for z, row in zip(null, x, strict=True)],
        pa.list_(pa.float32()),
    )


@pytest.fixture(scope="session")
def item_shards(tmp_path_factory) -> Path:
    """SYNTHETIC items in 3 Parquet shards (small row groups): emb_text 16-d, emb_audio 8-d,
    5% / 10% null cells (items lacking that modality)."""
    root = tmp_path_factory.mktemp("shards") / "items"
    root.mkdir()
    rng = np.random.default_rng(7)
    for s, n in enumerate((700, 500, 900)):
        table = pa.table(
            {
                "item_id": [f"synthetic-{s}-{i:04d}" for i in range(n)],
                "emb_text": _list_column(rng, n, 16, 0.05),
                "emb_audio": _list_column(rng, n, 8, 0.10),
            }
        ).replace_schema_metadata({"psrq.synthetic": "true"})
        pq.write_table(table, root / f"part-{s}.parquet", row_group_size=256)
    return root
