from __future__ import annotations

import pyarrow as pa
import pytest

from psrq.data.parquet_source import load_parquet
from psrq.data.schema import validate_interactions, validate_items
from psrq.errors import InputError

from .helpers import write_parquet_pair

ITEMS = {"item_id": ["a", "b", "c"], "text": ["A song", "B song", "C song"]}
INTER = {
    "user_id": ["u1", "u1", "u2"],
    "item_id": ["a", "b", "c"],
    "timestamp": [1_300_000_000, 1_300_000_100, 1_300_000_200],
}


def test_valid_pair_loads_with_string_ids(tmp_path):
    i, x = write_parquet_pair(
        tmp_path,
        {"item_id": [1, 2, 3], "text": ["x", "y", "z"]},
        {"user_id": [7, 7, 8], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]},
    )
    data = load_parquet(i, x)
    assert data.items.schema.field("item_id").type == pa.string()
    assert data.interactions.column("user_id").to_pylist() == ["7", "7", "8"]
    assert data.interactions.schema.field("timestamp").type == pa.int64()


def test_missing_column_names_file_and_column(tmp_path):
    i, x = write_parquet_pair(tmp_path, {"item_id": ["a"], "name": ["n"]}, INTER)
    with pytest.raises(InputError, match=r"items\.parquet: missing column\(s\) text"):
        load_parquet(i, x)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="items file not found"):
        load_parquet(tmp_path / "nope.parquet", tmp_path / "x.parquet")


def test_not_parquet(tmp_path):
    (tmp_path / "items.parquet").write_text("item_id,text\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_parquet(tmp_path / "items.parquet", tmp_path / "items.parquet")


def test_duplicate_item_ids_name_id_and_rows():
    items = pa.table({"item_id": ["a", "b", "a"], "text": ["x", "y", "z"]})
    with pytest.raises(InputError, match=r"f\.parquet: duplicate item_id 'a' at rows 0, 2"):
        validate_items(items, "f.parquet")


def test_empty_text_raises_or_is_skipped_and_counted(tmp_path):
    items = {"item_id": ["a", "b", "c"], "text": ["x", "  ", None]}
    i, x = write_parquet_pair(tmp_path, items, INTER)
    # Each row is named with its own item (issue 9: row 2 is item 'c', not 'b').
    with pytest.raises(
        InputError, match=r"text is empty or null for item 'b' at row 1, item 'c' at row 2"
    ):
        load_parquet(i, x)
    data = load_parquet(i, x, on_empty_text="skip")
    assert data.items.column("item_id").to_pylist() == ["a"]
    assert data.skipped == {"items_with_empty_text": 2, "interactions_of_skipped_items": 2}
    assert data.interactions.num_rows == 1


def test_unknown_item_names_item_and_row():
    inter = pa.table({**INTER, "item_id": ["a", "zz", "c"]})
    with pytest.raises(
        InputError, match=r"inter\.parquet: item_id 'zz' at row 1 is not in the items table"
    ):
        validate_interactions(inter, pa.array(ITEMS["item_id"]), "inter.parquet")


def test_unknown_items_each_named_with_their_own_row():
    inter = pa.table({**INTER, "item_id": ["yy", "zz", "c"]})
    with pytest.raises(
        InputError, match=r"item_id 'yy' at row 0, item_id 'zz' at row 1 are not in the items table"
    ):
        validate_interactions(inter, pa.array(ITEMS["item_id"]), "inter.parquet")


@pytest.mark.parametrize("bad, hint", [(1_300_000_000_000, "milliseconds"), (-5, "out of range")])
def test_timestamp_out_of_range(bad, hint):
    inter = pa.table({**INTER, "timestamp": [1_300_000_000, bad, 1_300_000_200]})
    with pytest.raises(InputError, match=rf"timestamp value {bad} at row 1 is out of range.*") as e:
        validate_interactions(inter, pa.array(ITEMS["item_id"]), "x")
    assert hint in str(e.value) or hint == "out of range"


def test_timestamp_type_arrow_timestamp_is_converted():
    inter = pa.table(
        {
            **INTER,
            "timestamp": pa.array(
                [1_300_000_000, 1_300_000_001, 1_300_000_002], pa.timestamp("ms")
            ),
        }
    )
    out = validate_interactions(inter, pa.array(ITEMS["item_id"]), "x")
    assert out.column("timestamp").to_pylist() == [1_300_000, 1_300_000, 1_300_000]


def test_label_outside_01_names_value_and_row():
    inter = pa.table({**INTER, "label": [1, 0, 2]})
    with pytest.raises(InputError, match=r"label must be 0 or 1, got 2 at row 2"):
        validate_interactions(inter, pa.array(ITEMS["item_id"]), "x")


def test_null_user_id_is_named():
    inter = pa.table({**INTER, "user_id": ["u1", None, "u2"]})
    with pytest.raises(InputError, match=r"column user_id is null at row 1"):
        validate_interactions(inter, pa.array(ITEMS["item_id"]), "x")


# ---- precomputed modalities: emb_<modality> columns, text optional -------------------------------


def _synthetic_vectors(n, dim, seed):
    """SYNTHETIC: seeded random vectors."""
    import numpy as np

    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32").tolist()


def test_emb_columns_make_text_optional_and_become_embedding_tables(tmp_path):
    audio = _synthetic_vectors(3, 4, 0)
    audio[1] = None  # item b lacks audio
    i, x = write_parquet_pair(
        tmp_path,
        {"item_id": ["a", "b", "c"], "emb_audio": audio, "emb_image": _synthetic_vectors(3, 6, 1)},
        INTER,
    )
    data = load_parquet(i, x)
    assert "text" not in data.items.column_names
    assert sorted(data.embeddings) == ["audio", "image"]
    a = data.embeddings["audio"]
    assert a.column("item_id").to_pylist() == [
        "a",
        "c",
    ]  # the null cell: the item lacks the modality
    assert a.schema.field("embedding").type == pa.list_(
        pa.float32(), 4
    )  # fixed_size_list, as psrq embed writes
    meta = {k.decode(): v.decode() for k, v in a.schema.metadata.items()}
    assert (
        meta["psrq.dim"] == "4"
        and meta["psrq.modality"] == "audio"
        and meta["psrq.n_skipped"] == "1"
    )
    assert meta["psrq.encoder"] == "precomputed:items.parquet:emb_audio"


def test_no_text_and_no_emb_column_says_what_is_needed(tmp_path):
    i, x = write_parquet_pair(
        tmp_path, {"item_id": ["a", "b", "c"], "name": ["x", "y", "z"]}, INTER
    )
    with pytest.raises(InputError, match=r"missing column\(s\) text .*emb_<modality>"):
        load_parquet(i, x)


def test_bad_emb_column_names_file_column_and_item(tmp_path):
    vectors = _synthetic_vectors(3, 4, 0)
    vectors[2] = vectors[2][:3]  # one vector is shorter
    i, x = write_parquet_pair(tmp_path, {"item_id": ["a", "b", "c"], "emb_audio": vectors}, INTER)
    with pytest.raises(
        InputError,
        match=r"items\.parquet: column 'emb_audio' has vectors of different lengths.*'c'",
    ):
        load_parquet(i, x)
    i, x = write_parquet_pair(
        tmp_path, {"item_id": ["a", "b", "c"], "emb_Audio": _synthetic_vectors(3, 4, 0)}, INTER
    )
    with pytest.raises(InputError, match=r"modality name 'Audio'.*emb_Audio"):
        load_parquet(i, x)
