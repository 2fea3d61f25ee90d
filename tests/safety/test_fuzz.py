"""Issue 9.7: property-based fuzzing. Every input to the quantizer API and to the Parquet readers
either works or raises a PsrqError subclass, never another exception type.

Inputs are SYNTHETIC (drawn by hypothesis). Example counts are modest so each test stays well
under a minute; the derandomized profile makes failures reproducible in CI.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from psrq.errors import PsrqError

# PSRQ_FUZZ_SCALE=10 PSRQ_FUZZ_RANDOM=1 pytest tests/safety/test_fuzz.py: a longer, random hunt.
SCALE = float(os.environ.get("PSRQ_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=int(60 * SCALE),
    deadline=None,
    derandomize=os.environ.get("PSRQ_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import faiss
    import torch

    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before[0])
    torch.set_num_threads(before[1])


# ---- quantizers -------------------------------------------------------------------------------
@st.composite
def matrices(draw):
    n = draw(st.integers(0, 40))
    d = draw(st.integers(0, 6))
    # Half the draws are plain float32 matrices, so fitting and encoding run, not only validation.
    dtype = draw(
        st.sampled_from(
            ["float32"] * 6 + ["float64", "float16", "int64", "bool", "object", "complex64"]
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.normal(size=(n, d))
    if n and d and draw(st.integers(0, 3)) == 0:  # NaN / inf somewhere
        k = draw(st.integers(1, n * d))
        flat = X.reshape(-1)
        flat[rng.choice(n * d, size=k, replace=False)] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    if draw(st.integers(0, 3)) == 0:  # duplicate rows: fewer distinct points than codes
        X[:] = X[:1] if n else X
    shape = draw(st.sampled_from(["2d"] * 5 + ["1d", "3d", "list"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = X.astype(dtype)
    if shape == "1d":
        return X.reshape(-1)
    if shape == "3d":
        return X.reshape(n, d, 1)
    if shape == "list":
        return X.tolist()
    return X


sizes = st.one_of(
    st.integers(1, 8),
    st.integers(-2, 50),
    st.lists(st.integers(-1, 40), min_size=0, max_size=5),
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.just("8"),
    st.just(2.5),
)


def _call(fn, *args, **kw):
    """Run fn; a PsrqError is an accepted outcome, anything else fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kw)
    except PsrqError:
        return None


@pytest.mark.slow
@given(
    X=matrices(),
    method=st.sampled_from(["VQ", "PQ", "RQKMeans", "PSRQ"]),
    levels=st.integers(-1, 4),
    size=sizes,
    prefix=st.sampled_from([0.0, 0.5, 1.0, -1.0, float("nan")]),
)
@FUZZ
def test_kmeans_quantizers_work_or_raise_psrq_errors(X, method, levels, size, prefix):
    from psrq.quantize import QUANTIZERS

    params = {"codebook_size": size, "niter": 2}
    if method != "VQ":
        params["n_levels"] = levels
    if method == "PSRQ":
        params["prefix_weight"] = prefix
    q = _call(QUANTIZERS[method], **params)
    if q is None:
        return
    fitted = _call(q.fit, X)
    codes = _call(q.transform, X)
    event("fitted" if fitted is not None else "refused")
    if fitted is not None and codes is not None:
        codes = np.asarray(codes)
        assert codes.ndim == 2 and codes.shape[1] == q.n_levels_
        rec = _call(q.inverse_transform, codes)
        assert rec is None or np.asarray(rec).shape[0] == codes.shape[0]
    if fitted is not None:  # hostile codes into a fitted model
        for bad in (np.full((2, 7), -1), np.array([[10**9]]), [["a"]], np.zeros((0,)), None):
            _call(q.inverse_transform, bad)


@pytest.mark.slow
@given(X=matrices(), levels=st.integers(-1, 3), size=sizes)
@settings(FUZZ, max_examples=int(25 * SCALE))
def test_rqvae_works_or_raises_psrq_errors(X, levels, size):
    from psrq.quantize import QUANTIZERS

    q = _call(
        QUANTIZERS["RQVAE"],
        n_levels=levels,
        codebook_size=size,
        latent_dim=2,
        hidden_dims=(4,),
        epochs=1,
        batch_size=16,
    )
    if q is None:
        return
    if _call(q.fit, X) is not None:
        _call(q.transform, X)


# ---- Parquet readers --------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
cells = st.one_of(
    scalars,
    st.lists(st.one_of(st.none(), st.integers(-3, 70000), st.floats(allow_nan=True)), max_size=4),
)
COLUMN_NAMES = [
    "item_id",
    "embedding",
    "sid_text",
    "sid_joint",
    "sid_text_suffix",
    "missing_modalities",
    "user_id",
    "label",
    "history",
    "timestamp",
    "text",
    "is_cold",
]


@st.composite
def tables(draw):
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=0, max_size=5, unique=True))
    columns = {}
    for name in names:
        values = draw(st.lists(cells, min_size=n, max_size=n))
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else str(v) for v in values])
    table = pa.table(columns) if columns else pa.table({"x": pa.array([], pa.int8())})
    if draw(st.booleans()):
        meta = draw(
            st.sampled_from(
                [b'{"text": [4, 4]}', b"not json", b"[1, 2]", b'{"text": ["a"]}', b'{"joint": 3}']
            )
        )
        table = table.replace_schema_metadata(
            {b"psrq.sid_sizes": meta, b"psrq.modalities": b'["text"]'}
        )
    return table


def id_column(draw, n):
    """n item IDs, all strings or all ints (one Arrow type), with nulls, duplicates, odd text."""
    if draw(st.booleans()):
        return pa.array(
            draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n)),
            pa.int64(),
        )
    return pa.array(
        draw(
            st.lists(
                st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "", " a", "a,b"])),
                min_size=n,
                max_size=n,
            )
        ),
        pa.string(),
    )


@st.composite
def sid_tables(draw):
    """sids.parquet-like: item_id, sid_<codebook> code lists of random lengths, nulls, metadata."""
    n = draw(st.integers(0, 5))
    columns = {"item_id": id_column(draw, n)}
    for cb in draw(
        st.lists(st.sampled_from(["text", "audio", "joint"]), min_size=0, max_size=3, unique=True)
    ):
        width = draw(st.integers(0, 3))
        code = st.one_of(st.none(), st.integers(-2, 9))
        rows = draw(
            st.lists(
                st.one_of(
                    st.none(),
                    st.lists(code, min_size=width, max_size=width + draw(st.integers(0, 1))),
                ),
                min_size=n,
                max_size=n,
            )
        )
        columns[f"sid_{cb}"] = pa.array(rows, type=pa.list_(pa.int32()))
        if draw(st.booleans()):
            columns[f"sid_{cb}_suffix"] = pa.array(
                draw(st.lists(st.one_of(st.none(), st.integers(-1, 3)), min_size=n, max_size=n)),
                pa.int32(),
            )
    if draw(st.booleans()):
        columns["missing_modalities"] = pa.array(
            draw(
                st.lists(
                    st.one_of(
                        st.none(), st.lists(st.sampled_from(["text", "audio", "x"]), max_size=2)
                    ),
                    min_size=n,
                    max_size=n,
                )
            ),
            type=pa.list_(pa.string()),
        )
    table = pa.table(columns)
    meta = {}
    if draw(st.booleans()):
        meta[b"psrq.sid_sizes"] = draw(
            st.sampled_from(
                [b'{"text": [4, 4]}', b'{"text": [10, 10, 10], "joint": [4]}', b"nope", b"[]"]
            )
        )
    if draw(st.booleans()):
        meta[b"psrq.modalities"] = draw(
            st.sampled_from([b'["text"]', b'["text", "audio"]', b"{}", b"x"])
        )
    return table.replace_schema_metadata(meta)


@st.composite
def embedding_tables(draw):
    """embeddings/<modality>.parquet-like: item_id + embedding lists of random lengths, nulls, NaN."""
    n = draw(st.integers(0, 5))
    value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32))
    width = draw(st.integers(0, 3))
    rows = draw(
        st.lists(
            st.one_of(
                st.none(), st.lists(value, min_size=width, max_size=width + draw(st.integers(0, 1)))
            ),
            min_size=n,
            max_size=n,
        )
    )
    return pa.table(
        {"item_id": id_column(draw, n), "embedding": pa.array(rows, type=pa.list_(pa.float32()))}
    )


def _readers():
    from psrq.data.parquet_source import load_parquet
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.formats.ids import read_parquet
    from psrq.formats.sids import SemanticIDs
    from psrq.rank.batches import read_embeddings, read_sids
    from psrq.rank.train import load_ranking_data

    def samples(path: Path):
        d = path.parent / "samples"
        d.mkdir(exist_ok=True)
        for split in ("train", "valid", "test"):
            (d / f"{split}.parquet").write_bytes(path.read_bytes())
        return load_ranking_data(d)

    return {
        "read_sids": read_sids,
        "SemanticIDs.read": SemanticIDs.read,
        "read_embeddings": read_embeddings,
        "read_embedding_parquet": lambda p: read_embedding_parquet(p, "text"),
        "read_table": read_parquet,
        "load_parquet(items)": lambda p: load_parquet(p, p),
        "load_ranking_data": samples,
    }


@pytest.mark.slow
@given(
    table=st.one_of(sid_tables(), embedding_tables()),
    reader=st.sampled_from(
        ["read_sids", "SemanticIDs.read", "read_embeddings", "read_embedding_parquet"]
    ),
)
@settings(FUZZ, max_examples=int(100 * SCALE))
def test_sid_and_embedding_readers_on_near_valid_files(table, reader):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.parquet"
        pq.write_table(table, path)
        _call(_readers()[reader], path)


@pytest.mark.slow
@given(
    table=tables(),
    reader=st.sampled_from(sorted(_readers())),
    garbage=st.sampled_from([None, b"", b"PAR1", b"not parquet"]),
)
@settings(FUZZ, max_examples=int(100 * SCALE))
def test_parquet_readers_work_or_raise_psrq_errors(table, reader, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.parquet"
        if garbage is None:
            pq.write_table(table, path)
        else:
            path.write_bytes(garbage)
        _call(_readers()[reader], path)
