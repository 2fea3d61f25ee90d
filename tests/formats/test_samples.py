"""psrq.formats.samples: the samples split format, its schema check, reader and writer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.errors import InputError
from psrq.formats.samples import (
    SAMPLE_COLUMNS,
    SAMPLE_SCHEMA,
    check_samples_schema,
    read_samples,
    split_path,
    write_samples,
)


def _table(**overrides):
    columns = {
        "user_id": pa.array(["u1", "u2"], pa.string()),
        "item_id": pa.array(["a", "b"], pa.string()),
        "label": pa.array([1, 0], pa.int8()),
        "timestamp": pa.array([1, 2], pa.int64()),
        "history": pa.array([["b"], None], pa.list_(pa.string())),
        "split": pa.array(["train", "train"], pa.string()),
        "item_train_count": pa.array([3, 0], pa.int32()),
        "is_cold": pa.array([True, True]),
    }
    columns.update(overrides)
    return pa.table({k: v for k, v in columns.items() if v is not None})


def test_samples_round_trip(tmp_path):
    table = _table()
    assert table.schema == SAMPLE_SCHEMA
    path = write_samples(split_path(tmp_path / "samples", "train"), table)
    assert path == tmp_path / "samples" / "train.parquet"
    assert read_samples(path).equals(table)
    write_samples(tmp_path / "plain.parquet", table, atomic=False)
    assert pq.read_table(tmp_path / "plain.parquet").equals(table)


def test_the_protocol_writes_this_schema():
    from psrq.data.protocol import SAMPLE_SCHEMA as written

    assert written is SAMPLE_SCHEMA
    assert set(SAMPLE_COLUMNS) <= set(SAMPLE_SCHEMA.names)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"history": None}, r"missing column\(s\) \['history'\]"),
        ({"label": pa.array(["1", "0"])}, r"column 'label' must be 0/1 numbers"),
        ({"item_id": pa.array([1.0, 2.0])}, r"column 'item_id' must hold string or integer IDs"),
        ({"history": pa.array([[1.5], []], pa.list_(pa.float64()))}, "must be a list of item IDs"),
    ],
)
def test_bad_schemas_are_refused_and_nothing_is_written(tmp_path, override, message):
    table = _table(**override)
    with pytest.raises(InputError, match=message):
        check_samples_schema(table, "t")
    with pytest.raises(InputError, match=message):
        write_samples(tmp_path / "t.parquet", table)
    assert not (tmp_path / "t.parquet").exists()
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(InputError, match=message):
        read_samples(tmp_path / "t.parquet")


def test_null_rules_null_history_is_padding_null_label_is_an_error():
    from psrq.rank.batches import build_item_tables, encode_samples

    table = _table()
    tables = build_item_tables(table, min_id_count=1)
    split = encode_samples(table, tables, max_history=3)
    np.testing.assert_array_equal(split.history.numpy()[1], [0, 0, 0])
    bad = _table(label=pa.array([1, None], pa.int8()))
    with pytest.raises(InputError, match=r"column 'label' is null at row 1"):
        encode_samples(bad, tables, source="t")
