"""Encoding samples: histories, vocabularies, OOV rows, bad inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.errors import ArtifactError, InputError
from psrq.rank.batches import (
    build_item_tables,
    check_sids_match,
    encode_samples,
    encode_split,
    read_sids,
)
from psrq.rank.models import OOV, PAD


def _samples(histories, items=None, labels=None, users=None):
    n = len(histories)
    return pa.table(
        {
            "user_id": pa.array(users or ["u"] * n, pa.string()),
            "item_id": pa.array(items or ["a"] * n, pa.string()),
            "label": pa.array(labels if labels is not None else [1] * n, pa.int8()),
            "history": pa.array(histories, pa.list_(pa.string())),
            "is_cold": pa.array([False] * n),
        }
    )


def test_histories_keep_the_newest_and_pad_with_zero():
    train = _samples([["a", "b", "c", "d", "e"], [], None, ["b"]], items=["a", "b", "c", "d"])
    tables = build_item_tables(train, min_id_count=1)
    split = encode_samples(train, tables, max_history=3)
    rows = tables.rows_of(["c", "d", "e", "b"])
    assert split.history[0].tolist() == rows[:3].tolist()  # newest 3 of a..e, oldest first
    assert split.history[1].tolist() == [PAD] * 3  # empty history
    assert split.history[2].tolist() == [PAD] * 3  # null history
    assert split.history[3].tolist() == [rows[3], PAD, PAD]


def test_unknown_items_map_to_oov_and_rare_items_share_the_oov_id():
    train = _samples([["a"], ["a", "b"]], items=["a", "c"])
    tables = build_item_tables(train, min_id_count=2)
    a, b, c = tables.rows_of(["a", "b", "c"])
    assert tables.item_to_id[a] >= 2  # seen 3 times
    assert tables.item_to_id[b] == OOV and tables.item_to_id[c] == OOV  # seen once
    assert tables.rows_of(["never-seen"])[0] == OOV
    test = encode_samples(_samples([["zzz"]], items=["yyy"]), tables, max_history=4)
    assert test.target.tolist() == [OOV] and test.history[0, 0] == OOV
    assert test.n_unknown_targets == 1


@pytest.mark.parametrize("bad", [2, -1])
def test_labels_outside_0_1_are_rejected_with_the_row(tmp_path, bad):
    path = tmp_path / "train.parquet"
    pq.write_table(_samples([[], []], labels=[1, bad]), path)
    tables = build_item_tables(_samples([[]]))
    with pytest.raises(InputError, match=r"train.parquet.*label.*row 1"):
        encode_split(path, tables)


def test_missing_column_names_the_file(tmp_path):
    path = tmp_path / "valid.parquet"
    pq.write_table(_samples([[]]).drop(["history"]), path)
    with pytest.raises(InputError, match=r"valid.parquet.*history"):
        encode_split(path, build_item_tables(_samples([[]])))


def _write_sids(path, codes):
    ids = [f"i{k}" for k in range(len(codes))]
    col = pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray(codes, np.int32).ravel(), pa.int32()), len(codes[0])
    )
    pq.write_table(pa.table({"item_id": ids, "sid_text": col}), path)
    return ids


def test_sids_of_another_quantizer_are_detected(tmp_path):
    ids = _write_sids(tmp_path / "a.parquet", [[0, 1], [1, 2], [2, 3]])
    train = _samples([[ids[0]], [ids[1]]], items=ids[:2])
    tables = build_item_tables(train, sids=read_sids(tmp_path / "a.parquet"))
    check_sids_match(tables, tmp_path / "a.parquet")  # the same file passes
    _write_sids(tmp_path / "b.parquet", [[0, 1], [3, 2], [2, 3]])
    with pytest.raises(ArtifactError, match=r"i1.*model \[1, 2\].*file \[3, 2\]"):
        check_sids_match(tables, tmp_path / "b.parquet")


def test_new_item_codes_outside_the_codebook_fail(tmp_path):
    ids = _write_sids(tmp_path / "a.parquet", [[0, 1], [1, 2]])
    tables = build_item_tables(
        _samples([[ids[0]]], items=ids[:1]), sids=read_sids(tmp_path / "a.parquet")
    )
    with pytest.raises(ArtifactError, match=r"new.*outside"):
        tables.with_new_items(["new"], sids={"text": np.array([[7, 0]])})


def test_duplicate_item_ids_in_sids_are_rejected(tmp_path):
    col = pa.FixedSizeListArray.from_arrays(pa.array([0, 1, 0, 1], pa.int32()), 2)
    pq.write_table(pa.table({"item_id": ["x", "x"], "sid_text": col}), tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"duplicate item IDs: 'x' x2"):
        read_sids(tmp_path / "d.parquet")
