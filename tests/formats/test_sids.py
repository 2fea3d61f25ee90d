"""psrq.formats.sids: the sids.parquet writer, its one decoder, and its null rule."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.errors import ArtifactError, InputError
from psrq.formats.sids import (
    JOINT,
    SemanticIDs,
    check_sids_source,
    read_sids_source,
)
from psrq.rank.batches import read_sids


def _sids() -> SemanticIDs:
    ids = np.array(["a", "b", "c"], dtype=object)
    has = np.array([[True, True], [True, False], [False, True]])
    codes = {
        "text": np.array([[1, 2], [3, 4], [0, 0]], np.int32),
        "audio": np.array([[5, 6], [0, 0], [7, 0]], np.int32),
        JOINT: np.array([[1, 1], [2, 2], [3, 3]], np.int32),
    }
    present = {"text": has[:, 0], "audio": has[:, 1], JOINT: np.ones(3, bool)}
    suffixes = {cb: np.where(p, 0, -1).astype(np.int32) for cb, p in present.items()}
    meta = {
        "psrq.sid_sizes": json.dumps({"text": [8, 8], "audio": [8, 8], JOINT: [4, 4]}),
        "psrq.methods": json.dumps({"text": "PSRQ", "audio": "PSRQ", JOINT: "PSRQ"}),
        "psrq.quantizer_fingerprint": "f1",
    }
    return SemanticIDs(ids, ["text", "audio"], has, codes, present, suffixes, meta)


def test_semantic_ids_round_trip(tmp_path):
    sids = _sids()
    sids.write(tmp_path / "s.parquet")
    back = SemanticIDs.read(tmp_path / "s.parquet")
    assert back.item_ids.tolist() == ["a", "b", "c"] and back.modalities == ["text", "audio"]
    assert back.codebooks == ["text", "audio", JOINT]
    np.testing.assert_array_equal(back.has_modality, sids.has_modality)
    for cb in sids.codebooks:
        np.testing.assert_array_equal(back.codes[cb], sids.codes[cb])
        np.testing.assert_array_equal(back.present[cb], sids.present[cb])
        np.testing.assert_array_equal(back.suffixes[cb], sids.suffixes[cb])
    assert back.metadata["psrq.quantizer_fingerprint"] == "f1"
    assert back.missing_modalities() == [[], ["audio"], ["text"]]
    assert pq.read_table(tmp_path / "s.parquet").column("sid_audio").null_count == 1


def test_null_list_is_the_same_missing_item_for_both_decoders(tmp_path):
    """The rankers' -1 rows are exactly the rows SemanticIDs marks as not present."""
    _sids().write(tmp_path / "s.parquet")
    back = SemanticIDs.read(tmp_path / "s.parquet")
    ids, codes, sizes = read_sids(tmp_path / "s.parquet")
    assert ids.tolist() == back.item_ids.tolist()
    for cb in back.codebooks:
        assert ((codes[cb] == -1).all(1) == ~back.present[cb]).all(), cb
        np.testing.assert_array_equal(codes[cb][back.present[cb]], back.codes[cb][back.present[cb]])
    np.testing.assert_array_equal(codes["audio"], [[5, 6], [-1, -1], [7, 0]])
    assert sizes == {"text": [8, 8], "audio": [8, 8], JOINT: [4, 4]}


def test_all_null_variable_list_takes_the_declared_levels_in_both_decoders(tmp_path):
    col = pa.array([None, None], type=pa.list_(pa.int32()))
    meta = {b"psrq.sid_sizes": json.dumps({"audio": [4, 4, 4]}).encode()}
    table = pa.table({"item_id": ["a", "b"], "sid_audio": col}).replace_schema_metadata(meta)
    pq.write_table(table, tmp_path / "s.parquet")
    back = SemanticIDs.read(tmp_path / "s.parquet")
    assert back.codes["audio"].shape == (2, 3) and not back.present["audio"].any()
    _, codes, sizes = read_sids(tmp_path / "s.parquet")
    assert codes["audio"].shape == (2, 3) and (codes["audio"] == -1).all()
    assert sizes == {"audio": [4, 4, 4]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([[0, None], [1, 2]], r"null code inside a code list"),
        ([[0, -1], [1, 2]], r"'sid_text' row 0 \(item 'a'\) has a negative code"),
        ([[0, 1], [1, 2, 3]], r"'sid_text' row 1 \(item 'b'\) has 3 levels, expected 2"),
    ],
)
def test_bad_code_lists_are_errors_for_every_reader(tmp_path, values, message):
    col = pa.array(values, type=pa.list_(pa.int32()))
    pq.write_table(pa.table({"item_id": ["a", "b"], "sid_text": col}), tmp_path / "s.parquet")
    for reader in (SemanticIDs.read, read_sids):
        with pytest.raises(InputError, match=message):
            reader(tmp_path / "s.parquet")


def test_declared_levels_must_match(tmp_path):
    col = pa.FixedSizeListArray.from_arrays(pa.array([0, 1, 1, 2], pa.int32()), 2)
    meta = {b"psrq.sid_sizes": json.dumps({"text": [4, 4, 4]}).encode()}
    table = pa.table({"item_id": ["a", "b"], "sid_text": col}).replace_schema_metadata(meta)
    pq.write_table(table, tmp_path / "s.parquet")
    with pytest.raises(InputError, match="has 2 levels but the metadata declares 3"):
        read_sids(tmp_path / "s.parquet")


def test_sizes_without_metadata_are_the_largest_code_plus_one():
    sids = _sids()
    sids.metadata = {}
    assert sids.sid_sizes() == {"text": [4, 5], "audio": [8, 7], JOINT: [4, 4]}


def test_quantizer_source_is_read_and_checked(tmp_path):
    _sids().write(tmp_path / "s.parquet")
    source = read_sids_source(tmp_path / "s.parquet")
    assert source["psrq.quantizer_fingerprint"] == "f1"
    check_sids_source(source, tmp_path / "s.parquet")  # the same quantizer passes
    check_sids_source({}, tmp_path / "s.parquet")
    with pytest.raises(
        ArtifactError, match="quantizer fingerprint f1 in the file, f2 in the model"
    ):
        check_sids_source({"psrq.quantizer_fingerprint": "f2"}, tmp_path / "s.parquet")


def test_multimodal_output_is_decoded_the_same_way(tmp_path):
    """Items missing a modality: null codes written by the quantizer, -1 for the rankers."""
    from psrq import MultimodalQuantizer

    rng = np.random.default_rng(0)
    ids = np.array([f"i{k}" for k in range(40)], dtype=object)
    inputs = {
        "text": (ids, rng.normal(size=(40, 4)).astype(np.float32)),
        "audio": (ids[:30], rng.normal(size=(30, 4)).astype(np.float32)),
    }
    mq = MultimodalQuantizer(method="RQKMeans", params={"codebook_size": 4, "n_levels": 2})
    mq.fit_transform(inputs).write(tmp_path / "s.parquet")
    _, codes, sizes = read_sids(tmp_path / "s.parquet")
    assert (codes["audio"][30:] == -1).all() and (codes["audio"][:30] >= 0).all()
    assert (codes[JOINT] >= 0).all() and sizes[JOINT] == [4, 4]
