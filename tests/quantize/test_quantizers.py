"""VQ, PQ, RQKMeans and PSRQ on SYNTHETIC data (the synthetic_blobs fixture, small seeded matrices)."""

from __future__ import annotations

import inspect
import itertools
import warnings

import numpy as np
import pytest

import psrq
from psrq.errors import InputError, NotFittedError
from psrq.quantize import QUANTIZERS
from psrq.quantize import base as base_module
from psrq.quantize.base import BaseQuantizer
from psrq.quantize.inputs import ArraySource, EmbeddingSource
from psrq.quantize.pq import subvector_bounds

NAMES = ["VQ", "PQ", "RQKMeans", "PSRQ"]
FAST = {"codebook_size": 8, "niter": 8}


def make(name: str, **kw):
    return getattr(psrq, name)(**{**FAST, **kw})


def synthetic_matrix(n: int = 300, d: int = 12, seed: int = 1) -> np.ndarray:
    """SYNTHETIC float32 [n, d] standard-normal rows."""
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


# ---- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_exported_registered_and_named_by_kind(name):
    cls = getattr(psrq, name)
    assert cls is QUANTIZERS[name]
    assert issubclass(cls, BaseQuantizer)
    assert cls.kind == name


@pytest.mark.parametrize("name", NAMES)
def test_constructor_is_keyword_only_with_defaults(name):
    params = list(inspect.signature(getattr(psrq, name).__init__).parameters.values())[1:]
    assert params and all(p.kind == p.KEYWORD_ONLY for p in params)
    assert all(p.default is not p.empty for p in params)
    q = getattr(psrq, name)()
    assert q.seed == 0 and q.max_points_per_centroid == 256 and q.on_invalid == "raise"
    assert q.set_params(max_points_per_centroid=64).max_points_per_centroid == 64
    with pytest.raises(InputError, match="no parameter 'bogus'"):
        q.set_params(bogus=1)


def test_default_levels_and_prefix_weight():
    assert psrq.RQKMeans().n_levels == 3 and psrq.PSRQ().n_levels == 3
    assert psrq.PQ().n_levels == 4
    assert psrq.PSRQ().prefix_weight == 0.5  # chosen on ranking results (docs/results-lastfm2k.md)
    assert "n_levels" not in psrq.VQ().get_params()


@pytest.mark.parametrize("name", NAMES)
def test_codes_shape_dtype_and_range(name, synthetic_blobs):
    q = make(name)
    assert q.fit(synthetic_blobs) is q
    codes = q.transform(synthetic_blobs)
    expected_levels = {"VQ": 1, "PQ": 4, "RQKMeans": 3, "PSRQ": 3}[name]
    assert codes.dtype == np.int32 and codes.shape == (len(synthetic_blobs), expected_levels)
    assert codes.min() >= 0 and codes.max() < 8
    assert q.n_levels_ == expected_levels
    recon = q.inverse_transform(codes)
    assert recon.dtype == np.float32 and recon.shape == synthetic_blobs.shape
    np.testing.assert_array_equal(q.fit_transform(synthetic_blobs), codes)


@pytest.mark.parametrize("name", ["PQ", "RQKMeans", "PSRQ"])
def test_per_level_codebook_sizes(name, synthetic_blobs):
    sizes = [4, 8, 16] if name != "PQ" else [4, 8, 16, 2]
    q = make(name, codebook_size=sizes)
    if name == "PQ":
        q.set_params(n_levels=4)
    codes = q.fit_transform(synthetic_blobs)
    assert q.codebook_sizes_ == sizes
    assert [len(c) for c in q.codebooks_] == sizes
    assert (codes.max(axis=0) < np.array(sizes)).all()
    assert len(np.unique(codes[:, 2])) > 8  # the 16-code level really uses more than 8 codes


def test_codebook_size_list_must_match_levels():
    with pytest.raises(InputError, match="codebook_size has 2 entries but n_levels=3"):
        psrq.RQKMeans(codebook_size=[4, 4]).fit(synthetic_matrix())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"niter": 0}, "niter must be an integer >= 1"),
        ({"max_points_per_centroid": 0}, "max_points_per_centroid must be an integer >= 1"),
        ({"on_invalid": "ignore"}, "on_invalid must be 'raise' or 'drop'"),
        ({"prefix_weight": -0.5}, "prefix_weight must be a finite number >= 0"),
        ({"prefix_weight": float("nan")}, "prefix_weight must be a finite number >= 0"),
        ({"n_levels": 0}, "n_levels must be >= 1"),
        ({"codebook_size": 0}, "codebook sizes must be >= 1"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        psrq.PSRQ(**kwargs).fit(synthetic_matrix())


# ---- fit on a seeded sample, assign in chunks ----------------------------------------------------


def test_fit_trains_on_one_seeded_sample_of_k_times_points_per_centroid():
    # With max_points_per_centroid=1 the sample has exactly k rows, and k-means on k points
    # returns those points: the codebook must be exactly the seeded sample.
    x = synthetic_matrix(500)
    q = psrq.VQ(codebook_size=8, max_points_per_centroid=1, seed=3).fit(x)
    sample = ArraySource(x).sample(8, seed=3)
    np.testing.assert_array_equal(np.sort(q.codebooks_[0], axis=0), np.sort(sample, axis=0))


class CountingSource(ArraySource):
    """A real ArraySource that records how many rows each read touches."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__(x, name="counted")
        self.rows_taken: list[int] = []
        self.batches_read = 0

    def take(self, rows: np.ndarray) -> np.ndarray:
        self.rows_taken.append(len(rows))
        return super().take(rows)

    def iter_batches(self, batch_size: int):
        for item in super().iter_batches(batch_size):
            self.batches_read += 1
            yield item


def test_fit_reads_only_the_sample_not_every_row():
    x = synthetic_matrix(30_000, d=8)
    source = CountingSource(x)
    psrq.PSRQ(codebook_size=8, niter=4, max_points_per_centroid=50).fit(source)
    assert source.batches_read == 0
    assert 8 * 50 in source.rows_taken  # the one training sample
    assert max(source.rows_taken) <= 10_000  # the other read is the fingerprint's spaced rows


@pytest.mark.parametrize("name", NAMES)
def test_transform_is_independent_of_chunking(name, synthetic_blobs, monkeypatch):
    q = make(name).fit(synthetic_blobs)
    whole = q.transform(synthetic_blobs)
    monkeypatch.setattr(base_module, "ENCODE_BATCH", 97)
    np.testing.assert_array_equal(q.transform(synthetic_blobs), whole)


def fit_time_assignment(x: np.ndarray, codebooks: list[np.ndarray], w: float) -> np.ndarray:
    """PSRQ's assignment as fit defines it, written out: Z_l = [X_l || w (X - X_l)] built as a
    real 2d-wide matrix, id_l = argmin_c ||Z_l - C_l[c]||^2, X_{l+1} = X_l - C_l[id_l, :d]."""
    x = x.astype(np.float64)
    d = x.shape[1]
    residual = x.copy()
    codes = np.empty((len(x), len(codebooks)), dtype=np.int64)
    for level, c in enumerate(codebooks):
        z = residual if level == 0 else np.hstack([residual, w * (x - residual)])
        dist = ((z[:, None, :] - c[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
        codes[:, level] = dist.argmin(axis=1)
        residual = residual - c[codes[:, level], :d]
    return codes


def test_transform_of_the_training_rows_matches_fit_assignment(synthetic_blobs):
    # transform never builds Z_l (prefix tables instead); on the rows fit trained on, its codes
    # must be the ones the explicit concatenated-space assignment of fit gives.
    x = synthetic_blobs[:500]  # n <= k * max_points_per_centroid: fit trained on every row
    for w in (0.5, 1.0):
        q = psrq.PSRQ(codebook_size=8, niter=8, prefix_weight=w).fit(x)
        expected = fit_time_assignment(x, q.codebooks_, w)
        codes = q.transform(x)
        # float32 vs float64 rounding may flip an exact tie; anything more is a bookkeeping bug
        assert (codes == expected).all(axis=1).mean() >= 0.998  # at most 1 of 500 rows
        assert (codes[:, 0] == expected[:, 0]).all()


# ---- PSRQ ------------------------------------------------------------------------------------------


def test_psrq_weight_zero_is_exactly_rqkmeans(synthetic_blobs):
    for sizes in (8, [4, 16, 8]):
        rq = psrq.RQKMeans(codebook_size=sizes, niter=8, seed=5).fit(synthetic_blobs)
        ps = psrq.PSRQ(codebook_size=sizes, niter=8, seed=5, prefix_weight=0.0).fit(synthetic_blobs)
        np.testing.assert_array_equal(ps.transform(synthetic_blobs), rq.transform(synthetic_blobs))
        for a, b in zip(ps.codebooks_, rq.codebooks_, strict=True):
            np.testing.assert_array_equal(a, b)


def test_psrq_codebooks_are_2d_wide_after_level_one(synthetic_blobs):
    q = psrq.PSRQ(codebook_size=8, niter=8).fit(synthetic_blobs)
    d = synthetic_blobs.shape[1]
    assert [c.shape for c in q.codebooks_] == [(8, d), (8, 2 * d), (8, 2 * d)]


def brute_force_psrq_codes(q, x: np.ndarray) -> np.ndarray:
    """Reference: argmin ||[residual || w * prefix] - C_l[c]|| over the full distance matrix."""
    d, w = x.shape[1], q.prefix_weight
    residual, prefix = x.astype(np.float64), np.zeros_like(x, dtype=np.float64)
    codes = np.empty((len(x), len(q.codebooks_)), dtype=np.int64)
    for level, c in enumerate(q.codebooks_):
        z = residual if level == 0 else np.concatenate([residual, w * prefix], axis=1)
        dist = ((z[:, None, :] - c[None].astype(np.float64)) ** 2).sum(-1)
        codes[:, level] = dist.argmin(axis=1)
        residual -= c[codes[:, level], :d]
        prefix += c[codes[:, level], :d]
    return codes


@pytest.mark.parametrize("weight", [1.0, 0.5, 3.0])
def test_psrq_assigns_in_the_concatenated_space(weight, synthetic_blobs):
    x = synthetic_blobs[:600]
    q = psrq.PSRQ(codebook_size=8, niter=8, prefix_weight=weight).fit(x)
    codes = q.transform(x)
    agreement = (codes == brute_force_psrq_codes(q, x)).mean()
    assert agreement > 0.995  # float32 vs float64 ties aside, the same argmin


def test_psrq_reconstruction_is_the_sum_of_residual_halves(synthetic_blobs):
    q = psrq.PSRQ(codebook_size=8, niter=8).fit(synthetic_blobs)
    codes = q.transform(synthetic_blobs)
    d = synthetic_blobs.shape[1]
    for used in (1, 2, 3):
        expected = sum(q.codebooks_[lvl][codes[:, lvl], :d] for lvl in range(used))
        np.testing.assert_allclose(
            q.inverse_transform(codes, n_levels=used), expected, rtol=1e-6, atol=1e-6
        )


def test_psrq_layer_two_repeats_layer_one_unlike_rq(synthetic_blobs):
    """The measured effect (method.md): at weight 1, level-2 codes mostly re-encode level 1."""
    # Imported here, not at the top: sklearn's OpenMP runtime, loaded before faiss's, makes
    # faiss spin-wait (see psrq.quantize.kmeans.import_faiss).
    from sklearn.metrics import normalized_mutual_info_score

    def nmi(q):
        codes = q.fit_transform(synthetic_blobs)
        return normalized_mutual_info_score(codes[:, 0], codes[:, 1])

    paper = nmi(psrq.PSRQ(codebook_size=16, niter=10, prefix_weight=1.0))
    rq = nmi(psrq.RQKMeans(codebook_size=16, niter=10))
    assert paper > 0.8
    assert paper > rq + 0.25


# ---- quality sanity ---------------------------------------------------------------------------------


def reconstruction_errors(q, x: np.ndarray) -> list[float]:
    codes = q.transform(x)
    return [
        float(((q.inverse_transform(codes, n_levels=lvl) - x) ** 2).sum(1).mean())
        for lvl in range(1, q.n_levels_ + 1)
    ]


@pytest.mark.parametrize("name", ["RQKMeans", "PSRQ", "PQ"])
def test_reconstruction_error_decreases_level_by_level(name, synthetic_blobs):
    q = make(name).fit(synthetic_blobs)
    errors = reconstruction_errors(q, synthetic_blobs)
    assert all(b < a for a, b in itertools.pairwise(errors)), errors


def test_rq_beats_vq_and_vq_beats_the_mean(synthetic_blobs):
    vq_err = reconstruction_errors(psrq.VQ(codebook_size=16).fit(synthetic_blobs), synthetic_blobs)[
        0
    ]
    rq_err = reconstruction_errors(
        psrq.RQKMeans(codebook_size=16).fit(synthetic_blobs), synthetic_blobs
    )[-1]
    mean_err = float(((synthetic_blobs - synthetic_blobs.mean(0)) ** 2).sum(1).mean())
    assert rq_err < 0.5 * vq_err < 0.5 * mean_err


def test_vq_is_one_level_rqkmeans(synthetic_blobs):
    vq = psrq.VQ(codebook_size=8, niter=8).fit(synthetic_blobs)
    rq = psrq.RQKMeans(n_levels=1, codebook_size=8, niter=8).fit(synthetic_blobs)
    np.testing.assert_array_equal(vq.transform(synthetic_blobs), rq.transform(synthetic_blobs))


# ---- PQ ------------------------------------------------------------------------------------------------


def test_pq_uneven_split_follows_array_split():
    np.testing.assert_array_equal(subvector_bounds(10, 4), [0, 3, 6, 8, 10])
    np.testing.assert_array_equal(subvector_bounds(8, 4), [0, 2, 4, 6, 8])
    x = synthetic_matrix(400, d=10)
    q = psrq.PQ(codebook_size=8, niter=8).fit(x)
    assert [c.shape for c in q.codebooks_] == [(8, 3), (8, 3), (8, 2), (8, 2)]


def test_pq_partial_reconstruction_uses_the_training_mean():
    x = synthetic_matrix(400, d=10) + 5.0
    q = psrq.PQ(codebook_size=8, niter=8).fit(x)
    codes = q.transform(x)
    partial = q.inverse_transform(codes, n_levels=1)
    np.testing.assert_allclose(partial[:, 3:], np.broadcast_to(x.mean(0)[3:], (400, 7)), rtol=1e-5)
    np.testing.assert_array_equal(partial[:, :3], q.codebooks_[0][codes[:, 0]])
    np.testing.assert_array_equal(q.inverse_transform(codes)[:, 8:], q.codebooks_[3][codes[:, 3]])


def test_pq_needs_at_least_one_column_per_subvector():
    with pytest.raises(InputError, match="cannot split 3 columns into 4 sub-vectors"):
        psrq.PQ(codebook_size=4).fit(synthetic_matrix(100, d=3))


# ---- determinism --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_codes_with_default_faiss_threads(name, synthetic_blobs):
    # faiss keeps its default OpenMP thread count here (2 on the CI/dev machines).
    first, second = make(name, seed=7).fit(synthetic_blobs), make(name, seed=7).fit(synthetic_blobs)
    np.testing.assert_array_equal(
        first.transform(synthetic_blobs), second.transform(synthetic_blobs)
    )
    for a, b in zip(first.codebooks_, second.codebooks_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_other_seed_other_codebooks(synthetic_blobs):
    a = psrq.RQKMeans(codebook_size=8, seed=1).fit(synthetic_blobs)
    b = psrq.RQKMeans(codebook_size=8, seed=2).fit(synthetic_blobs)
    assert not np.array_equal(a.codebooks_[1], b.codebooks_[1])


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_rows_are_named(name, synthetic_blobs):
    x = synthetic_blobs.copy()
    x[3, 0] = np.nan
    x[17, 5] = np.inf
    with pytest.raises(InputError, match=r"2 row\(s\) with NaN or inf: rows 3, 17"):
        make(name).fit(x)


@pytest.mark.parametrize("name", NAMES)
def test_drop_fits_on_the_valid_rows(name, synthetic_blobs):
    x = synthetic_blobs.copy()
    x[[3, 17]] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 2 row\(s\) with NaN or inf: rows 3, 17"):
        dropped = make(name, on_invalid="drop").fit(x)
    valid = np.delete(synthetic_blobs, [3, 17], axis=0)
    clean = make(name).fit(valid)
    assert dropped.n_fit_rows_ == len(valid)
    np.testing.assert_array_equal(dropped.transform(valid), clean.transform(valid))
    with pytest.raises(InputError, match="rows 3, 17"):
        dropped.transform(x)  # codes for NaN rows would be meaningless: transform always raises


def test_drop_with_every_row_invalid_says_so():
    x = np.full((10, 4), np.nan, dtype=np.float32)
    with warnings.catch_warnings(), pytest.raises(InputError, match="all 10 rows hold NaN or inf"):
        warnings.simplefilter("ignore")
        psrq.VQ(codebook_size=2, on_invalid="drop").fit(x)


@pytest.mark.parametrize("name", NAMES)
def test_dimension_mismatch_between_fit_and_transform(name, synthetic_blobs):
    q = make(name).fit(synthetic_blobs)
    with pytest.raises(InputError, match=r"has 31 columns but this .* was fitted on 32"):
        q.transform(synthetic_blobs[:, :31])


@pytest.mark.parametrize("name", NAMES)
def test_fewer_items_than_codes(name):
    with pytest.raises(InputError, match="cannot learn 8 codes from 5 items"):
        make(name).fit(synthetic_matrix(5))


@pytest.mark.parametrize("name", NAMES)
def test_empty_input(name):
    with pytest.raises(InputError, match="empty input"):
        make(name).fit(np.zeros((0, 12), dtype=np.float32))


@pytest.mark.parametrize(
    "bad",
    [np.ones(12, dtype=np.float32), np.ones((2, 3, 4)), np.array([["a", "b"]]), np.ones((5, 0))],
)
def test_non_matrix_input(bad):
    with pytest.raises(InputError, match=r"must be a 2-D matrix|must be numeric|zero columns"):
        psrq.RQKMeans(codebook_size=2).fit(bad)


def test_codes_out_of_range_for_inverse_transform(synthetic_blobs):
    q = psrq.RQKMeans(codebook_size=[4, 8, 8], niter=8).fit(synthetic_blobs)
    codes = q.transform(synthetic_blobs[:5]).copy()
    codes[2, 0] = 4
    with pytest.raises(InputError, match=r"code 4 at row 2, level 0 is outside \[0, 4\)"):
        q.inverse_transform(codes)
    codes[2, 0] = -1
    with pytest.raises(InputError, match="code -1 at row 2, level 0"):
        q.inverse_transform(codes)
    with pytest.raises(InputError, match=r"shape \[n_items, 3\]"):
        q.inverse_transform(codes[:, :2])
    with pytest.raises(InputError, match="must be integers"):
        q.inverse_transform(codes.astype(np.float32))
    with pytest.raises(InputError, match=r"n_levels must be in \[1, 3\]"):
        q.inverse_transform(q.transform(synthetic_blobs[:5]), n_levels=4)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_use(name, tmp_path):
    q = getattr(psrq, name)()
    for call in (
        lambda: q.transform(synthetic_matrix()),
        lambda: q.inverse_transform(np.zeros((1, 1), dtype=np.int32)),
        lambda: q.save(tmp_path / "m"),
        lambda: q.n_levels_,
    ):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call()
    assert not (tmp_path / "m").exists()


def test_degenerate_data_with_as_many_items_as_codes():
    # Level 0 copies the 8 points, so deeper levels cluster all-zero residuals: no NaN, no crash.
    x = synthetic_matrix(8, d=6)
    q = psrq.PSRQ(codebook_size=8, niter=4).fit(x)
    codes = q.transform(x)
    assert np.isfinite(np.concatenate([c.ravel() for c in q.codebooks_])).all()
    np.testing.assert_allclose(q.inverse_transform(codes), x, atol=1e-5)


def test_custom_embedding_source_is_accepted(synthetic_blobs):
    class Halves(EmbeddingSource):
        """A user-written source: rows come from a function, never from one array."""

        name, n_rows, dim = "halves", len(synthetic_blobs), synthetic_blobs.shape[1]

        def take(self, rows):
            return synthetic_blobs[rows]

        def iter_batches(self, batch_size):
            for start in range(0, self.n_rows, batch_size):
                yield start, synthetic_blobs[start : start + batch_size]

    q = psrq.RQKMeans(**FAST).fit(Halves())
    np.testing.assert_array_equal(
        q.transform(Halves()), psrq.RQKMeans(**FAST).fit_transform(synthetic_blobs)
    )


@pytest.mark.parametrize("name", NAMES)
def test_fit_never_writes_into_the_callers_data(name, synthetic_blobs):
    class OwnMemory(EmbeddingSource):
        """A user-written source whose take() hands back its own array when asked for all rows."""

        name, n_rows, dim = "own-memory", len(synthetic_blobs), synthetic_blobs.shape[1]

        def take(self, rows):
            return synthetic_blobs if len(rows) == self.n_rows else synthetic_blobs[rows]

        def iter_batches(self, batch_size):
            for start in range(0, self.n_rows, batch_size):
                yield start, synthetic_blobs[start : start + batch_size]

    before = synthetic_blobs.copy()
    make(name).fit(OwnMemory())
    make(name).fit(synthetic_blobs).transform(synthetic_blobs)
    np.testing.assert_array_equal(synthetic_blobs, before)
