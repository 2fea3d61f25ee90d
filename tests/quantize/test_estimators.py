"""Quantizers and MultimodalQuantizer follow scikit-learn's estimator contract (SYNTHETIC data).

get_params / set_params / clone for every registered quantizer and the multimodal wrapper; a
Pipeline and a GridSearchCV over a quantizer parameter; `score`; parameters checked by the one
hook `fit` calls before reading any data.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from psrq import MultimodalQuantizer
from psrq.errors import ConfigError, InputError, NotFittedError
from psrq.quantize import QUANTIZERS
from psrq.quantize.base import BaseQuantizer
from psrq.quantize.registry import KINDS

pytestmark = pytest.mark.usefixtures("single_faiss_thread")

# A parameter per kind to change, and a value different from its default.
CHANGE = {
    "VQ": ("niter", 7),
    "PQ": ("n_levels", 2),
    "RQKMeans": ("n_levels", 2),
    "PSRQ": ("prefix_weight", 1.0),
    "RQVAE": ("latent_dim", 8),
}
SMALL_RQVAE = {
    "codebook_size": 4,
    "latent_dim": 4,
    "hidden_dims": (16,),
    "epochs": 1,
    "batch_size": 64,
    "max_train_items": 200,
}


def test_every_registered_kind_is_covered():
    assert set(CHANGE) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_get_params_lists_every_constructor_parameter(kind):
    q = QUANTIZERS[kind]()
    assert isinstance(q, BaseEstimator)
    params = q.get_params(deep=True)
    assert params == q.get_params(deep=False)
    assert sorted(params) == sorted(q._param_names())
    assert all(params[name] is getattr(q, name) for name in params)


@pytest.mark.parametrize("kind", KINDS)
def test_set_params_returns_self_and_changes_the_parameter(kind):
    name, value = CHANGE[kind]
    q = QUANTIZERS[kind]()
    assert q.get_params()[name] != value
    assert q.set_params(**{name: value}) is q
    assert q.get_params()[name] == value
    with pytest.raises(InputError, match="no parameter 'bogus'"):
        q.set_params(bogus=1)


@pytest.mark.parametrize("kind", KINDS)
def test_clone_is_an_unfitted_copy_with_equal_params(kind, synthetic_blobs):
    name, value = CHANGE[kind]
    kw = SMALL_RQVAE if kind == "RQVAE" else {"codebook_size": 4, "niter": 4}
    q = QUANTIZERS[kind](**kw).set_params(**{name: value}).fit(synthetic_blobs[:400])
    check_is_fitted(q)
    copy = clone(q)
    assert type(copy) is type(q) and copy is not q
    assert copy.get_params() == q.get_params()
    assert not copy.is_fitted
    with pytest.raises(NotFittedError):
        copy.transform(synthetic_blobs[:5])
    # a list parameter is copied, not shared
    q.codebook_size = [4, 4]
    assert clone(q).codebook_size == [4, 4] and clone(q).codebook_size is not q.codebook_size


def test_multimodal_quantizer_get_set_params_and_clone():
    mq = MultimodalQuantizer(
        method="rqkmeans", params={"codebook_size": 8}, weights={"audio": 2.0}, seed=3
    )
    params = mq.get_params(deep=True)
    assert params == {
        "method": "rqkmeans",
        "params": {"codebook_size": 8},
        "codebook_params": None,
        "normalize": "l2",
        "weights": {"audio": 2.0},
        "joint": True,
        "seed": 3,
    }
    assert mq.set_params(joint=False, normalize="standard") is mq
    assert mq.joint is False and mq.normalize == "standard"
    copy = clone(mq)
    assert type(copy) is MultimodalQuantizer and copy.get_params() == mq.get_params()
    assert copy.params is not mq.params  # dict parameters are copied
    assert not copy.is_fitted
    with pytest.raises(ValueError, match="bogus"):
        mq.set_params(bogus=1)


def test_clone_of_a_fitted_multimodal_quantizer_is_unfitted(synthetic_blobs):
    ids = np.array([f"synthetic-{i}" for i in range(300)], dtype=object)
    inputs = {"text": (ids, synthetic_blobs[:300, :16]), "audio": (ids, synthetic_blobs[:300, 16:])}
    mq = MultimodalQuantizer(method="vq", params={"codebook_size": 4}).fit(inputs)
    check_is_fitted(mq)
    assert not clone(mq).is_fitted


# ---- composition -----------------------------------------------------------------------------------


def test_score_is_negative_mean_squared_reconstruction_error(synthetic_blobs):
    q = QUANTIZERS["PSRQ"](codebook_size=8, niter=8).fit(synthetic_blobs)
    x_hat = q.inverse_transform(q.transform(synthetic_blobs))
    expected = -np.mean(np.sum((synthetic_blobs.astype(np.float64) - x_hat) ** 2, axis=1))
    assert q.score(synthetic_blobs) == pytest.approx(expected, rel=1e-5)
    assert q.score(synthetic_blobs) < 0


def test_pipeline_fits_and_transforms_through_a_quantizer(synthetic_blobs):
    pipe = Pipeline(
        [("scale", StandardScaler()), ("q", QUANTIZERS["RQKMeans"](codebook_size=8, niter=8))]
    )
    codes = pipe.fit(synthetic_blobs).transform(synthetic_blobs)
    scaled = StandardScaler().fit_transform(synthetic_blobs)
    alone = QUANTIZERS["RQKMeans"](codebook_size=8, niter=8).fit(scaled).transform(scaled)
    np.testing.assert_array_equal(codes, alone)
    assert pipe.score(synthetic_blobs) == pytest.approx(
        pipe.named_steps["q"].score(scaled), rel=1e-6
    )


def test_grid_search_over_a_quantizer_parameter_picks_the_lowest_error(synthetic_blobs):
    # More codes per level always reconstruct the SYNTHETIC blobs better, so the search must pick 16.
    pipe = Pipeline([("scale", StandardScaler()), ("q", QUANTIZERS["PSRQ"](n_levels=2, niter=8))])
    search = GridSearchCV(pipe, {"q__codebook_size": [2, 16]}, cv=2).fit(synthetic_blobs)
    assert search.best_params_ == {"q__codebook_size": 16}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] and (scores < 0).all()
    assert search.best_estimator_.named_steps["q"].codebook_sizes_ == [16, 16]


# ---- the one parameter hook ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_fit_checks_parameters_before_reading_any_data(kind, tmp_path):
    # The input path does not exist: the parameter error must come first.
    q = QUANTIZERS[kind](codebook_size=0)
    with pytest.raises(InputError, match="codebook sizes must be >= 1"):
        q.fit(tmp_path / "missing.npy")


def test_every_quantizer_has_its_own_parameter_hook():
    for kind in KINDS:
        assert QUANTIZERS[kind]._check_params is not BaseQuantizer._check_params
        assert "fit" not in vars(QUANTIZERS[kind])  # the base fit runs the hook; no override needed


def test_multimodal_checks_every_codebook_before_fitting_any(synthetic_blobs, monkeypatch):
    fitted: list[str] = []
    real_fit = BaseQuantizer.fit
    monkeypatch.setattr(
        BaseQuantizer, "fit", lambda self, X, y=None: fitted.append(self.kind) or real_fit(self, X)
    )
    ids = np.array([f"synthetic-{i}" for i in range(200)], dtype=object)
    inputs = {"text": (ids, synthetic_blobs[:200, :16]), "audio": (ids, synthetic_blobs[:200, 16:])}
    bad_joint = MultimodalQuantizer(
        params={"codebook_size": 4}, codebook_params={"joint": {"prefix_weight": -1.0}}
    )
    with pytest.raises(InputError, match="codebook 'joint': PSRQ: prefix_weight must be"):
        bad_joint.fit(inputs)
    unknown = MultimodalQuantizer(
        params={"codebook_size": 4}, codebook_params={"joint": {"method": "vq", "n_levels": 2}}
    )
    with pytest.raises(ConfigError, match="codebook 'joint': VQ has no parameter 'n_levels'"):
        unknown.fit(inputs)
    assert fitted == []
    MultimodalQuantizer(params={"codebook_size": 4}).fit(inputs)
    assert fitted == ["PSRQ", "PSRQ", "PSRQ"]
