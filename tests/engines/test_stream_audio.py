"""`psrq embed audio --engine local` on item shards: the rows and vectors of the in-memory path."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from psrq.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_streamed_audio_embedding_matches_memory(tmp_path):
    """SYNTHETIC tones (4 s, two pitches), an item without audio and a corrupt file."""
    rate = 22_050
    t = np.arange(4 * rate) / rate
    for name, hz in (("tone_a", 440), ("tone_b", 660)):
        sf.write(
            tmp_path / f"{name}.wav",
            0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)),
            rate,
        )
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    table = pa.table(
        {
            "item_id": ["a", "none", "bad", "b"],
            "audio_path": ["tone_a.wav", None, "corrupt.wav", "tone_b.wav"],
        }
    )
    pq.write_table(table, tmp_path / "items.parquet")
    ref = tmp_path / "memory.parquet"
    r = runner.invoke(
        app,
        [
            "embed",
            "audio",
            "--items",
            str(tmp_path / "items.parquet"),
            "--out",
            str(ref),
            "--no-cache",
            "--model",
            "musicnn-mtt",
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
            "audio",
            "--items",
            str(tmp_path / "items.parquet"),
            "--out",
            str(out),
            "--engine",
            "local",
            "--batch-rows",
            "2",
            "--model",
            "musicnn-mtt",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    want = pq.read_table(ref).sort_by("item_id")
    got = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("*.parquet"))]).sort_by(
        "item_id"
    )
    assert got.column("item_id").to_pylist() == want.column("item_id").to_pylist() == ["a", "b"]
    np.testing.assert_allclose(
        np.stack(got.column("embedding").to_numpy(zero_copy_only=False)),
        np.stack(want.column("embedding").to_numpy(zero_copy_only=False)),
        atol=1e-5,
    )
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert (report["n_items"], report["n_embedded"], report["n_skipped"]) == (4, 2, 2)
    assert sorted(s["item_id"] for s in report["skipped"]) == ["bad", "none"]
