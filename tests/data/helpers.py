"""Small writers for the tests: real file formats, made-up rows (labelled as such where synthetic)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_tsv(
    path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8"
) -> Path:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in r) for r in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def write_parquet_pair(
    root: Path, items: dict[str, list], interactions: dict[str, list]
) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    i, x = root / "items.parquet", root / "interactions.parquet"
    pq.write_table(pa.table(items), i)
    pq.write_table(pa.table(interactions), x)
    return i, x
