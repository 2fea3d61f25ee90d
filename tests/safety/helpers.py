"""Helpers for the safety tests (SYNTHETIC files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_embeddings(path: Path, ids: list[str], X: np.ndarray) -> Path:
    """embeddings/<modality>.parquet (item_id + fixed-size list embedding), SYNTHETIC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "item_id": pa.array(ids, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, X.shape[1]),
        }
    )
    pq.write_table(table.replace_schema_metadata({b"psrq.synthetic": b"true"}), path)
    return path
