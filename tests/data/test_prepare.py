from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from psrq.data.labels import LabelRule
from psrq.data.parquet_source import load_parquet
from psrq.data.prepare import DatasetSpec, prepare
from psrq.data.protocol import SAMPLE_SCHEMA, ProtocolConfig

from .helpers import write_parquet_pair


@pytest.fixture
def byo(tmp_path):
    """A tiny bring-your-own pair (made-up rows) with explicit labels."""
    items = {"item_id": [f"i{k}" for k in range(6)], "text": [f"track {k}" for k in range(6)]}
    inter = {
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u1", "u3", "u2"],
        "item_id": ["i0", "i1", "i0", "i2", "i3", "i4", "i5", "i1"],
        "timestamp": [10, 20, 30, 40, 50, 60, 70, 80],
        "label": [1, 0, 1, 1, 0, 1, 1, 1],
    }
    return write_parquet_pair(tmp_path / "in", items, inter)


def _spec(paths, calls):
    def load():
        calls.append(1)
        return load_parquet(*paths)

    return DatasetSpec("parquet", list(paths), load)


def test_outputs_schema_and_meta(byo, tmp_path):
    out = tmp_path / "out"
    res = prepare(_spec(byo, []), ProtocolConfig(split=(0.5, 0.25, 0.25)), out, verbose=False)
    assert not res.up_to_date
    for split in ("train", "valid", "test"):
        assert (
            pq.read_schema(out / "samples" / f"{split}.parquet").remove_metadata() == SAMPLE_SCHEMA
        )
    assert pq.read_table(out / "items.parquet").num_rows == 6
    meta = json.loads((out / "samples" / "meta.json").read_text())
    assert meta["label_rule"]["kind"] == "explicit"
    assert meta["protocol"]["split"] == [0.5, 0.25, 0.25]
    assert set(meta["splits"]) == {"train", "valid", "test"}
    assert (
        meta["splits"]["train"]["rows"]
        + meta["splits"]["valid"]["rows"]
        + meta["splits"]["test"]["rows"]
        == 8
    )


def test_cache_reuse_and_invalidation(byo, tmp_path, capsys):
    out, calls = tmp_path / "out", []
    cfg = ProtocolConfig()
    prepare(_spec(byo, calls), cfg, out)
    assert prepare(_spec(byo, calls), cfg, out).up_to_date
    assert "up to date" in capsys.readouterr().out
    assert len(calls) == 1  # the second run did not even load the data
    # another protocol configuration rebuilds
    assert not prepare(
        _spec(byo, calls), ProtocolConfig(max_history=3), out, verbose=False
    ).up_to_date
    # changed input contents rebuild
    table = pq.read_table(byo[1])
    pq.write_table(table.slice(0, 7), byo[1])
    res = prepare(_spec(byo, calls), ProtocolConfig(max_history=3), out, verbose=False)
    assert not res.up_to_date and len(calls) == 3
    # a deleted output rebuilds, --force rebuilds
    (out / "samples" / "test.parquet").unlink()
    assert not prepare(
        _spec(byo, calls), ProtocolConfig(max_history=3), out, verbose=False
    ).up_to_date
    assert not prepare(
        _spec(byo, calls), ProtocolConfig(max_history=3), out, force=True, verbose=False
    ).up_to_date


def test_failed_build_leaves_previous_outputs(byo, tmp_path):
    out = tmp_path / "out"
    prepare(_spec(byo, []), ProtocolConfig(), out, verbose=False)
    before = (out / "samples" / "meta.json").read_text()
    with pytest.raises(Exception, match="needs column 'rating'"):
        prepare(_spec(byo, []), ProtocolConfig(label_rule=LabelRule("rating")), out, verbose=False)
    assert (out / "samples" / "meta.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind
