"""psrq.formats.embeddings: the one writer and the readers of embedding Parquet, and its null rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.errors import InputError
from psrq.formats.embeddings import (
    EMBEDDING_COLUMN,
    check_modality_name,
    embedding_table,
    embeddings_metadata,
    read_embedding_parquet,
    read_embeddings_dir,
    read_items_parquet,
    table_modalities,
    write_embedding_parquet,
)
from psrq.formats.sids import JOINT


def test_written_embeddings_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3)).astype(np.float32)
    ids = [f"i{k}" for k in range(5)]
    path = write_embedding_parquet(
        tmp_path / "text.parquet", ids, X, dim=3, metadata={"psrq.encoder": "e", "psrq.dim": "3"}
    )
    schema = pq.read_schema(path)
    assert schema.field(EMBEDDING_COLUMN).type == pa.list_(pa.float32(), 3)
    assert schema.field("item_id").type == pa.string()
    got = read_embedding_parquet(path, "text")
    assert got.item_ids.tolist() == ids and got.n_null == 0 and got.dim == 3
    np.testing.assert_array_equal(got.X, X)
    assert got.metadata == {"psrq.encoder": "e", "psrq.dim": "3"}
    assert embeddings_metadata(path) == got.metadata
    assert embeddings_metadata(tmp_path / "absent.parquet") == {}
    assert list(read_embeddings_dir(tmp_path)) == ["text"]
    assert read_embeddings_dir(None) == {}


def _with_a_null(tmp_path):
    """text.parquet and items.parquet whose item 'b' has a null vector."""
    vectors = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32()))
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "embedding": vectors}), tmp_path / "text.parquet"
    )
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "emb_text": vectors}), tmp_path / "items.parquet"
    )
    return tmp_path / "text.parquet"


def test_null_vector_means_the_item_lacks_the_modality_in_every_keyed_reader(tmp_path):
    """The null rule: every reader keyed by item ID skips a null cell and counts it."""
    from psrq.rank.batches import build_item_tables, read_embeddings
    from psrq.rank.batches import read_embeddings_dir as rank_read_embeddings_dir

    path = _with_a_null(tmp_path)
    table = pq.read_table(path)
    readers = {
        "read_embedding_parquet": read_embedding_parquet(path, "text"),
        "read_embeddings_dir": read_embeddings_dir(tmp_path, ["text"])["text"],
        "read_items_parquet": read_items_parquet(tmp_path / "items.parquet")["text"],
        "table_modalities (streamed batches)": table_modalities(
            table, {"text": "embedding"}, "batch"
        )["text"],
    }
    for name, got in readers.items():
        assert got.item_ids.tolist() == ["a", "c"], name
        assert got.n_null == 1, name
        np.testing.assert_array_equal(got.X, [[1, 2], [3, 4]], err_msg=name)

    # The rankers read through the same rule: 'b' is absent, its content row stays zero.
    ids, X = read_embeddings(path)
    assert ids.tolist() == ["a", "c"] and X.shape == (2, 2)
    content = rank_read_embeddings_dir(tmp_path, ["text"])
    samples = pa.table(
        {
            "user_id": ["u"],
            "item_id": ["b"],
            "label": pa.array([1], pa.int8()),
            "history": pa.array([["a"]], pa.list_(pa.string())),
        }
    )
    tables = build_item_tables(samples, content=content, min_id_count=1)
    rows = tables.rows_of(["a", "b", "c"])
    np.testing.assert_array_equal(tables.content["text"][rows], [[1, 2], [0, 0], [3, 4]])


def test_null_vector_in_a_positional_reader_is_named_not_skipped(tmp_path):
    """Without item IDs a row cannot be skipped silently: the null row is named (or dropped and listed)."""
    from psrq.quantize.inputs import ParquetSource

    path = _with_a_null(tmp_path)
    src = ParquetSource(path, "embedding")
    with pytest.raises(
        InputError, match=r"text\.parquet: column 'embedding' is null at row\(s\) 1"
    ):
        list(src.iter_batches(10))
    dropped = ParquetSource(path, "embedding", on_invalid="drop")
    assert dropped.dropped_rows.tolist() == [1] and dropped.n_rows == 2


def test_all_null_file_is_an_error_for_the_rankers(tmp_path):
    from psrq.rank.batches import read_embeddings

    vectors = pa.array([None, None], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"item_id": ["a", "b"], "embedding": vectors}), tmp_path / "t.parquet")
    assert len(read_embedding_parquet(tmp_path / "t.parquet", "t")) == 0
    with pytest.raises(InputError, match=r"t\.parquet has no rows with an embedding \(2 null\)"):
        read_embeddings(tmp_path / "t.parquet")


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (
            [[1.0, float("nan")], [1.0, 2.0]],
            ["a", "b"],
            r"NaN or inf in the embedding of item\(s\) 'a'",
        ),
        ([[1.0, None], [1.0, 2.0]], ["a", "b"], r"NaN or inf in the embedding of item\(s\) 'a'"),
        ([[1.0], [1.0, 2.0]], ["a", "b"], r"vectors of different lengths.*'b'"),
        ([[1.0], [2.0]], ["a", "a"], r"duplicate item IDs: 'a' x2"),
        ([[1.0], [2.0]], ["a", None], r"column 'item_id' is null at row\(s\) 1"),
    ],
)
def test_bad_vectors_and_ids_are_named(tmp_path, vectors, ids, message):
    from psrq.rank.batches import read_embeddings

    path = tmp_path / "text.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(ids, pa.string()),
                "embedding": pa.array(vectors, pa.list_(pa.float32())),
            }
        ),
        path,
    )
    for reader in (lambda: read_embedding_parquet(path, "text"), lambda: read_embeddings(path)):
        with pytest.raises(InputError, match=message):
            reader()


def test_embedding_table_metadata_and_integer_ids(tmp_path):
    t = embedding_table(["1", "2"], np.eye(2), dim=2, metadata={"psrq.dim": 2})
    assert t.schema.metadata == {b"psrq.dim": b"2"}
    pq.write_table(t.set_column(0, "item_id", pa.array([1, 2], pa.int64())), tmp_path / "t.parquet")
    assert read_embedding_parquet(tmp_path / "t.parquet", "t").item_ids.tolist() == ["1", "2"]


def test_modality_names():
    assert check_modality_name("audio") == "audio"
    for bad in (JOINT, "text_suffix", "Text", "1x", ""):
        with pytest.raises(InputError):
            check_modality_name(bad)


def test_missing_file_and_column(tmp_path):
    with pytest.raises(InputError, match="Parquet file not found"):
        read_embedding_parquet(tmp_path / "none.parquet", "text")
    pq.write_table(pa.table({"item_id": ["a"]}), tmp_path / "t.parquet")
    with pytest.raises(InputError, match=r"missing column\(s\) \['embedding'\]"):
        read_embedding_parquet(tmp_path / "t.parquet", "text")
    with pytest.raises(InputError, match="no embeddings for modality"):
        read_embeddings_dir(tmp_path, ["audio"])
