"""The EmbeddingSource seam (numpy, memory-mapped .npy, Parquet) and quantizers fed through it.

All matrices here are SYNTHETIC (seeded random numbers or the synthetic_blobs fixture).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import psrq
from psrq.errors import InputError
from psrq.quantize.base import resolve_codebook_sizes
from psrq.quantize.inputs import ArraySource, ParquetSource, as_source

FAST = {"codebook_size": 8, "niter": 8}


def write_embeddings(
    path, x: np.ndarray, *, fixed: bool = True, batch_rows: int | None = None
) -> None:
    """Write x as the embeddings/<modality>.parquet schema: item_id + embedding list column."""
    flat = pa.array(x.ravel(), type=pa.float32())
    emb = (
        pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
        if fixed
        else pa.ListArray.from_arrays(
            pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32)), flat
        )
    )
    table = pa.table({"item_id": [f"synthetic-{i}" for i in range(len(x))], "embedding": emb})
    pq.write_table(table, path, row_group_size=batch_rows or len(x))


# ---- sources --------------------------------------------------------------------------------------


def test_array_source_batches_cover_every_row_in_order(synthetic_blobs):
    src = ArraySource(synthetic_blobs)
    starts, parts = zip(*src.iter_batches(300), strict=True)
    assert starts == tuple(range(0, 2000, 300))
    np.testing.assert_array_equal(np.concatenate(parts), synthetic_blobs)
    assert all(p.dtype == np.float32 for p in parts)


def test_sample_is_seeded_sorted_and_without_replacement(synthetic_blobs):
    src = ArraySource(synthetic_blobs)
    a, b, c = src.sample(100, seed=1), src.sample(100, seed=1), src.sample(100, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rows = [int(np.flatnonzero((synthetic_blobs == r).all(1))[0]) for r in a]
    assert rows == sorted(set(rows)) and len(rows) == 100
    np.testing.assert_array_equal(src.sample(5000, seed=1), synthetic_blobs)  # n >= rows: all rows


def test_drop_skips_invalid_rows_and_keeps_row_order():
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    x[[2, 7], 1] = [np.nan, -np.inf]
    src = ArraySource(x, on_invalid="drop")
    assert src.n_rows == 8 and src.dropped_rows.tolist() == [2, 7]
    np.testing.assert_array_equal(
        np.concatenate([b for _, b in src.iter_batches(3)]), np.delete(x, [2, 7], 0)
    )
    np.testing.assert_array_equal(src.take(np.array([2, 6])), x[[3, 8]])


def test_invalid_rows_listing_is_capped():
    x = np.zeros((30, 2), dtype=np.float32)
    x[::2] = np.nan
    with pytest.raises(
        InputError, match=r"15 row\(s\) .* rows 0, 2, 4, 6, 8, 10, 12, 14, 16, 18 and 5 more"
    ):
        ArraySource(x)


def test_integer_input_is_accepted_and_complex_is_not():
    assert ArraySource(np.ones((3, 2), dtype=np.int64)).take(np.arange(3)).dtype == np.float32
    with pytest.raises(InputError, match="must be numeric"):
        ArraySource(np.ones((3, 2), dtype=np.complex64))


def test_npy_path_is_memory_mapped(tmp_path, synthetic_blobs):
    path = tmp_path / "synthetic.npy"
    np.save(path, synthetic_blobs)
    src = as_source(path)
    assert not src.x.flags.owndata and not src.x.flags.writeable  # a read-only map, not a copy
    np.testing.assert_array_equal(src.take(np.arange(5)), synthetic_blobs[:5])


def test_as_source_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        as_source(tmp_path / "nope.npy")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(InputError, match=r"pass a \.npy file"):
        as_source(tmp_path / "x.csv")
    (tmp_path / "obj.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"obj\.npy"):
        as_source(tmp_path / "obj.npy")


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_source_reads_list_columns_across_row_groups(tmp_path, synthetic_blobs, fixed):
    path = tmp_path / "text.parquet"
    write_embeddings(path, synthetic_blobs, fixed=fixed, batch_rows=300)
    src = ParquetSource(path, "embedding", batch_rows=256)
    assert (src.n_rows, src.dim) == synthetic_blobs.shape
    np.testing.assert_array_equal(
        np.concatenate([b for _, b in src.iter_batches(700)]), synthetic_blobs
    )
    rows = np.array([0, 255, 256, 299, 300, 1999])
    np.testing.assert_array_equal(src.take(rows), synthetic_blobs[rows])


def test_parquet_source_reads_one_numeric_column_per_dimension(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2].astype(np.float64)}), path)
    src = ParquetSource(path, ["a", "b", "c"])
    assert src.dim == 3
    np.testing.assert_allclose(src.take(np.arange(50)), x, rtol=1e-7)


def test_parquet_missing_column(tmp_path, synthetic_blobs):
    path = tmp_path / "text.parquet"
    write_embeddings(path, synthetic_blobs[:10])
    with pytest.raises(InputError, match=r"text.parquet: missing column\(s\) \['emb'\]"):
        ParquetSource(path, "emb")
    with pytest.raises(InputError, match="Parquet file not found"):
        ParquetSource(tmp_path / "none.parquet", "embedding")


def test_parquet_non_numeric_columns(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table({"name": ["a", "b"], "tags": [["x", "y"], ["z", "w"]], "num": [1.0, 2.0]}), path
    )
    with pytest.raises(InputError, match="column 'name' is string; expected a list of floats"):
        ParquetSource(path, "name")
    with pytest.raises(InputError, match="column 'name' is string, not numeric"):
        ParquetSource(path, ["num", "name"])
    with pytest.raises(InputError, match="column 'tags' is not numeric"):
        ParquetSource(path, "tags")


def test_parquet_null_nan_and_ragged_rows_are_named(tmp_path):
    path = tmp_path / "holes.parquet"
    vectors = [[0.0, 1.0]] * 4 + [None] + [[1.0, 0.0]] * 3
    pq.write_table(pa.table({"embedding": pa.array(vectors, type=pa.list_(pa.float32()))}), path)
    with pytest.raises(InputError, match=r"'embedding' is null at row\(s\) 4"):
        psrq.VQ(codebook_size=2).fit(ParquetSource(path, "embedding"))

    vectors[4] = [float("nan"), 1.0]
    pq.write_table(pa.table({"embedding": pa.array(vectors, type=pa.list_(pa.float32()))}), path)
    with pytest.raises(InputError, match=r"NaN or inf in row\(s\) 4"):
        psrq.VQ(codebook_size=2).fit(ParquetSource(path, "embedding"))

    vectors[4] = [1.0, 1.0, 1.0]
    pq.write_table(pa.table({"embedding": pa.array(vectors, type=pa.list_(pa.float32()))}), path)
    with pytest.raises(InputError, match="vectors of different lengths"):
        psrq.VQ(codebook_size=2).fit(ParquetSource(path, "embedding"))


# ---- the same codes whatever the source -------------------------------------------------------------


@pytest.mark.parametrize("name", ["VQ", "PQ", "RQKMeans", "PSRQ"])
def test_numpy_memmap_and_parquet_give_identical_codes(name, tmp_path, synthetic_blobs):
    npy = tmp_path / "synthetic.npy"
    np.save(npy, synthetic_blobs)
    parquet = tmp_path / "synthetic.parquet"
    write_embeddings(parquet, synthetic_blobs, batch_rows=512)

    cls = getattr(psrq, name)
    from_array = cls(**FAST).fit(synthetic_blobs)
    from_npy = cls(**FAST).fit(npy)
    from_mmap = cls(**FAST).fit(np.load(npy, mmap_mode="r"))
    from_parquet = cls(**FAST).fit(ParquetSource(parquet, "embedding", batch_rows=300))

    expected = from_array.transform(synthetic_blobs)
    np.testing.assert_array_equal(from_npy.transform(npy), expected)
    np.testing.assert_array_equal(from_mmap.transform(np.load(npy, mmap_mode="r")), expected)
    np.testing.assert_array_equal(
        from_parquet.transform(ParquetSource(parquet, "embedding")), expected
    )
    assert (
        from_array.input_fingerprint_
        == from_npy.input_fingerprint_
        == from_parquet.input_fingerprint_
    )


def test_fingerprint_tells_inputs_apart(synthetic_blobs):
    a = ArraySource(synthetic_blobs).fingerprint()
    assert a == ArraySource(synthetic_blobs.copy()).fingerprint()
    assert a != ArraySource(synthetic_blobs[::-1]).fingerprint()
    assert a != ArraySource(synthetic_blobs + 1e-3).fingerprint()


# ---- base helpers -------------------------------------------------------------------------------------


def test_resolve_codebook_sizes():
    assert resolve_codebook_sizes(8, 3) == [8, 8, 8]
    assert resolve_codebook_sizes(np.int64(4), 2) == [4, 4]
    assert resolve_codebook_sizes([4, 8], 2) == [4, 8]
    with pytest.raises(InputError, match="has 3 entries but n_levels=2"):
        resolve_codebook_sizes([4, 8, 8], 2)
    with pytest.raises(InputError, match="codebook sizes must be >= 1"):
        resolve_codebook_sizes([4, 0], 2)


def test_parquet_drop_skips_null_and_nan_rows(tmp_path, synthetic_blobs):
    x = synthetic_blobs[:600].copy()
    vectors: list[list[float] | None] = [list(map(float, row)) for row in x]
    vectors[5] = None
    vectors[301][3] = float("nan")
    vectors[599][0] = float("inf")
    path = tmp_path / "holes.parquet"
    pq.write_table(pa.table({"embedding": pa.array(vectors, type=pa.list_(pa.float32()))}), path)

    src = ParquetSource(path, "embedding", batch_rows=128, on_invalid="drop")
    valid = np.delete(x, [5, 301, 599], axis=0)
    assert src.dropped_rows.tolist() == [5, 301, 599] and src.n_rows == 597
    np.testing.assert_array_equal(np.concatenate([b for _, b in src.iter_batches(100)]), valid)
    np.testing.assert_array_equal(
        src.take(np.array([4, 5, 299, 300, 596])), valid[[4, 5, 299, 300, 596]]
    )

    # The estimator's on_invalid="drop" applies to a plain ParquetSource too, and warns.
    with pytest.warns(UserWarning, match=r"dropped 3 row\(s\) with NaN or inf: rows 5, 301, 599"):
        q = psrq.PSRQ(**FAST, on_invalid="drop").fit(ParquetSource(path, "embedding"))
    np.testing.assert_array_equal(q.transform(valid), psrq.PSRQ(**FAST).fit_transform(valid))
    with pytest.raises(InputError, match=r"'embedding' is null at row\(s\) 5"):
        psrq.PSRQ(**FAST).fit(ParquetSource(path, "embedding"))


def test_parquet_on_invalid_is_checked(tmp_path, synthetic_blobs):
    path = tmp_path / "ok.parquet"
    write_embeddings(path, synthetic_blobs[:10])
    with pytest.raises(InputError, match="on_invalid must be 'raise' or 'drop'"):
        ParquetSource(path, "embedding", on_invalid="skip")
