"""`psrq embed text|audio`: output schema and metadata, reports, skips, and every bad-input path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from psrq.cli import app
from psrq.errors import InputError
from psrq.quantize.inputs import ParquetSource

from .tiny_models import write_wav

runner = CliRunner()


def _items(path: Path, **columns: list) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def _invoke(*args: str):
    return runner.invoke(app, ["embed", *args], catch_exceptions=True)


def _error(result) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError), result.output
    return str(result.exception)


@pytest.mark.slow
def test_text_minilm_schema_metadata_and_cache(tmp_path: Path) -> None:
    items = _items(
        tmp_path / "items.parquet",
        item_id=["a1", "a2", "a3"],
        text=[
            "Radiohead. Tags: alternative, rock",
            "Miles Davis. Tags: jazz",
            "Björk. Tags: electronic",
        ],
    )
    out = tmp_path / "emb" / "text.parquet"
    args = [
        "text",
        "--items",
        str(items),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert table.column("item_id").to_pylist() == ["a1", "a2", "a3"]
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert (
        meta["psrq.encoder"] == "sentence-transformers:all-MiniLM-L6-v2"
        and meta["psrq.dim"] == "384"
    )
    report = json.loads((tmp_path / "emb" / "text.report.json").read_text())
    assert report["n_embedded"] == 3 and report["n_cache_hits"] == 0
    # Quantizers read it through their Parquet seam.
    src = ParquetSource(out, "embedding")
    assert (src.n_rows, src.dim) == (3, 384)
    assert _invoke(*args).exit_code == 0
    rerun = json.loads((tmp_path / "emb" / "text.report.json").read_text())
    assert rerun["n_cache_hits"] == 3
    np.testing.assert_array_equal(
        pq.read_table(out).column("embedding").to_pylist(), table.column("embedding").to_pylist()
    )


def test_text_bad_inputs(tmp_path: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "text.parquet"
    model = ["--model", str(tiny_bert_dir), "--no-cache"]
    assert "items file not found" in _error(
        _invoke("text", "--items", str(tmp_path / "none.parquet"), "--out", str(out))
    )
    no_text = _items(tmp_path / "a.parquet", item_id=["x"], title=["rock"])
    assert "missing column(s) ['text']" in _error(
        _invoke("text", "--items", str(no_text), "--out", str(out))
    )
    dups = _items(tmp_path / "b.parquet", item_id=["x", "y", "x"], text=["rock", "jazz", "pop"])
    assert "duplicate item_id(s) 'x'" in _error(
        _invoke("text", "--items", str(dups), "--out", str(out))
    )
    blanks = _items(tmp_path / "c.parquet", item_id=["x", "y", "z"], text=["rock band", None, "  "])
    msg = _error(_invoke("text", "--items", str(blanks), "--out", str(out), *model))
    assert "'y', 'z'" in msg and "--skip-empty" in msg
    assert not out.exists()
    result = _invoke("text", "--items", str(blanks), "--out", str(out), "--skip-empty", *model)
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("item_id").to_pylist() == ["x"]
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["n_skipped"] == 2 and {s["item_id"] for s in report["skipped"]} == {"y", "z"}
    assert pq.read_metadata(out).metadata[b"psrq.n_skipped"] == b"2"


def test_text_column_option_and_numeric_ids(tmp_path: Path, tiny_bert_dir: Path) -> None:
    items = _items(
        tmp_path / "items.parquet",
        item_id=pa.array([10, 20], pa.int64()),
        bio=["jazz trumpet", "rock"],
    )
    out = tmp_path / "t.parquet"
    result = _invoke(
        "text",
        "--items",
        str(items),
        "--out",
        str(out),
        "--column",
        "bio",
        "--model",
        str(tiny_bert_dir),
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("item_id").to_pylist() == ["10", "20"]  # ids are strings everywhere
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)


def test_audio_items_skips_are_reported_never_lost(
    tmp_path: Path, clip_paths, tone_wav: Path, silent_wav: Path, corrupt_audio: Path
) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(clip_paths["trumpet"], audio / "trumpet.ogg")
    items = _items(
        tmp_path / "items.parquet",
        item_id=["trumpet", "tone", "no_audio", "silent", "corrupt", "gone"],
        audio_path=[
            "audio/trumpet.ogg",
            str(tone_wav),
            None,
            str(silent_wav),
            str(corrupt_audio),
            "audio/gone.wav",
        ],
    )
    out = tmp_path / "emb" / "audio.parquet"
    args = [
        "audio",
        "--items",
        str(items),
        "--out",
        str(out),
        "--model",
        "musicnn-mtt",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("item_id").to_pylist() == ["trumpet", "tone"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 200)
    assert b"musicnn-mtt" in table.schema.metadata[b"psrq.encoder"]
    report = json.loads((tmp_path / "emb" / "audio.report.json").read_text())
    assert report["n_items"] == 6 and report["n_embedded"] == 2 and report["n_skipped"] == 4
    assert report["skipped_by_reason"] == {"no audio": 1, "silent": 1, "unreadable": 2}
    reasons = {s["item_id"]: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "no_audio": "no audio",
        "silent": "silent",
        "corrupt": "unreadable",
        "gone": "unreadable",
    }
    assert report["n_cache_hits"] == 0
    # A rerun takes both vectors from the cache (keyed by file content) and writes the same file.
    assert _invoke(*args).exit_code == 0
    rerun = json.loads((tmp_path / "emb" / "audio.report.json").read_text())
    assert rerun["n_cache_hits"] == 2 and rerun["skipped_by_reason"] == report["skipped_by_reason"]
    assert pq.read_table(out).equals(table)
    # Changed audio at the same path is a cache miss, not a stale vector.
    write_wav(tone_wav, 0.5 * np.sin(np.linspace(0, 2000, 40_000)), 16_000)
    assert _invoke(*args).exit_code == 0
    assert json.loads((tmp_path / "emb" / "audio.report.json").read_text())["n_cache_hits"] == 1
    changed = pq.read_table(out).column("embedding").to_pylist()
    assert changed[0] == table.column("embedding").to_pylist()[0]
    assert changed[1] != table.column("embedding").to_pylist()[1]


def test_audio_dir_mode_and_bad_calls(tmp_path: Path, tone_wav: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(tone_wav, folder / "b_tone.wav")
    write_wav(
        folder / "a_chirp.wav", np.sin(np.cumsum(np.linspace(0.01, 0.3, 48_000))) * 0.5, 16_000
    )
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "audio.parquet"
    result = _invoke("audio", "--audio-dir", str(folder), "--out", str(out), "--no-cache")
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("item_id").to_pylist() == ["a_chirp", "b_tone"]
    assert "exactly one of" in _error(_invoke("audio", "--out", str(out)))
    assert "neither" in _error(
        _invoke("audio", "--audio-dir", str(folder), "--out", str(out), "--model", "mert")
    )
    shutil.copy(tone_wav, folder / "b_tone.flac")
    assert "duplicate item_id(s) 'b_tone'" in _error(
        _invoke("audio", "--audio-dir", str(folder), "--out", str(out))
    )


def test_help_has_examples() -> None:
    for cmd in ("text", "audio"):
        result = runner.invoke(app, ["embed", cmd, "--help"])
        assert result.exit_code == 0 and f"psrq embed {cmd} --" in result.output
