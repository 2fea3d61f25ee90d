"""A persistent embedding cache: one SQLite file per encoder fingerprint, keyed by SHA-256 of the input.

Layout: ``<cache_dir>/<modality>/<encoder fingerprint>.sqlite`` with one table
``vectors(key BLOB PRIMARY KEY, vec BLOB)``. The fingerprint covers the model files and every
setting that changes the vectors, so editing or swapping a model directory starts a new file
instead of serving stale vectors. Writes are SQLite transactions: a crash leaves the cache
either with or without a batch, never with half a vector.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np

DEFAULT_CACHE_DIR = Path(".psrq-cache") / "embeddings"


def default_cache_dir() -> Path:
    """$PSRQ_CACHE_DIR/embeddings if set, else ./.psrq-cache/embeddings."""
    env = os.environ.get("PSRQ_CACHE_DIR")
    return Path(env) / "embeddings" if env else DEFAULT_CACHE_DIR


def content_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """get_many / put_many of float32 vectors of width `dim` for one encoder fingerprint."""

    def __init__(
        self, cache_dir: str | os.PathLike[str], modality: str, fingerprint: str, dim: int
    ) -> None:
        self.path = Path(cache_dir) / modality / f"{fingerprint}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        # timeout: several processes may share one cache; wait for a writer rather than fail.
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)"
        )
        self.conn.commit()

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite caps bound parameters per statement
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self.conn.execute(
                f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk
            ):
                vec = np.frombuffer(blob, dtype=np.float32)
                if (
                    vec.shape[0] == self.dim
                ):  # a foreign width means a corrupted entry: recompute it
                    found[bytes(key)] = vec
        return found

    def put_many(self, keys: list[bytes], vectors: np.ndarray) -> None:
        rows = [
            (k, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in zip(keys, vectors, strict=True)
        ]
        with self.conn:  # one transaction
            self.conn.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
