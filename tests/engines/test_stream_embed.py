"""`psrq embed text --engine local|ray` on item shards: the rows and vectors of the in-memory path."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from psrq.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def text_items(tmp_path_factory):
    """SYNTHETIC items in 2 shards, one with a blank text (skipped with --skip-empty), plus the
    same rows as one file for the in-memory path."""
    root = tmp_path_factory.mktemp("text_items")
    texts = [
        f"SYNTHETIC track {i}: genre {g}, language {lang}"
        for i, (g, lang) in enumerate(
            zip(["rock", "jazz", "pop", "folk"] * 6, ["en", "es", "de"] * 8, strict=True)
        )
    ]
    texts[5] = "  "
    table = pa.table({"item_id": [f"synthetic-{i:03d}" for i in range(24)], "text": texts})
    (root / "shards").mkdir()
    pq.write_table(table.slice(0, 10), root / "shards" / "part-0.parquet")
    pq.write_table(table.slice(10), root / "shards" / "part-1.parquet")
    pq.write_table(table, root / "items.parquet")
    return root


def embeddings(path) -> tuple[list[str], np.ndarray]:
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    t = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("item_id")
    return t.column("item_id").to_pylist(), np.stack(
        t.column("embedding").to_numpy(zero_copy_only=False)
    )


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_streamed_text_embedding_matches_memory(engine, text_items, tmp_path, request):
    if engine == "ray":
        request.getfixturevalue("ray_local")
    ref = tmp_path / "memory.parquet"
    r = runner.invoke(
        app,
        [
            "embed",
            "text",
            "--items",
            str(text_items / "items.parquet"),
            "--out",
            str(ref),
            "--skip-empty",
            "--no-cache",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "streamed"
    r = runner.invoke(
        app,
        [
            "embed",
            "text",
            "--items",
            str(text_items / "shards"),
            "--out",
            str(out),
            "--skip-empty",
            "--engine",
            engine,
            "--batch-rows",
            "7",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    ids_ref, x_ref = embeddings(ref)
    ids, x = embeddings(out)
    assert ids == ids_ref and "synthetic-005" not in ids and len(ids) == 23
    np.testing.assert_allclose(x, x_ref, atol=1e-5)  # padding differs per batch; attention masks it
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert (report["n_items"], report["n_embedded"], report["n_skipped"]) == (24, 23, 1)
    assert report["skipped"] == [{"item_id": "synthetic-005"}]
    meta = pq.read_schema(sorted(out.glob("*.parquet"))[0]).metadata
    assert meta[b"psrq.modality"] == b"text" and meta[b"psrq.dim"] == b"384"


def test_streamed_text_refuses_a_backend_it_would_not_use(text_items, tmp_path):
    """The streamed mappers run torch: --backend onnx* with --engine local is an error, not ignored."""
    from psrq.errors import ConfigError

    result = runner.invoke(
        app,
        [
            "embed",
            "text",
            "--items",
            str(text_items / "shards"),
            "--out",
            str(tmp_path / "e"),
            "--engine",
            "local",
            "--backend",
            "onnx-int8",
        ],
    )
    assert isinstance(result.exception, ConfigError) and "--engine memory" in str(result.exception)
    assert not (tmp_path / "e").exists()
