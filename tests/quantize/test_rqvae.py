"""RQVAE: the learned residual-quantization baseline. All data here is SYNTHETIC (Gaussian blobs)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from psrq import RQVAE
from psrq.artifacts import manifest_digest
from psrq.errors import ArtifactError, ConfigError, InputError, NotFittedError
from psrq.quantize import QUANTIZERS
from psrq.quantize.base import BaseQuantizer

# Small enough to fit in well under a second on one core, big enough to learn the 20 blobs.
SMALL = {
    "codebook_size": 16,
    "latent_dim": 16,
    "hidden_dims": (64,),
    "epochs": 12,
    "batch_size": 128,
}


def small_rqvae(**overrides: object) -> RQVAE:
    return RQVAE(**{**SMALL, **overrides})


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


_FITTED: dict[bytes, RQVAE] = {}


@pytest.fixture
def fitted(synthetic_blobs: np.ndarray) -> RQVAE:
    """One fit shared by the read-only tests (keyed on the data, so it cannot go stale)."""
    key = hashlib.sha256(synthetic_blobs.tobytes()).digest()
    if key not in _FITTED:
        _FITTED[key] = small_rqvae().fit(synthetic_blobs)
    return _FITTED[key]


# ---- API shape --------------------------------------------------------------------------------
def test_exported_and_registered() -> None:
    assert QUANTIZERS["RQVAE"] is RQVAE
    assert RQVAE.kind == "RQVAE"
    assert issubclass(RQVAE, BaseQuantizer)


def test_codes_shape_range_dtype(fitted: RQVAE, synthetic_blobs: np.ndarray) -> None:
    codes = fitted.transform(synthetic_blobs)
    assert codes.shape == (len(synthetic_blobs), 3)
    assert codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 16
    # Codes must depend on the item: 20 blobs cannot share a handful of tuples.
    assert len(np.unique(codes, axis=0)) >= 20


def test_per_level_codebook_sizes(synthetic_blobs: np.ndarray) -> None:
    q = small_rqvae(codebook_size=[8, 16, 4], epochs=3).fit(synthetic_blobs)
    codes = q.transform(synthetic_blobs)
    assert q.codebook_sizes_ == [8, 16, 4]
    assert [int(codes[:, level].max()) for level in range(3)] <= [7, 15, 3]
    assert [cb.shape[0] for cb in q.net_.codebooks] == [8, 16, 4]


# ---- quality ----------------------------------------------------------------------------------
def test_reconstruction_beats_the_global_mean(fitted: RQVAE, synthetic_blobs: np.ndarray) -> None:
    recon = fitted.inverse_transform(fitted.transform(synthetic_blobs))
    assert recon.shape == synthetic_blobs.shape and recon.dtype == np.float32
    mean_baseline = np.broadcast_to(synthetic_blobs.mean(0), synthetic_blobs.shape)
    assert mean_cosine(synthetic_blobs, recon) > mean_cosine(synthetic_blobs, mean_baseline) + 0.3
    assert np.mean((recon - synthetic_blobs) ** 2) < 0.5 * np.mean(
        (mean_baseline - synthetic_blobs) ** 2
    )


def test_partial_reconstruction_improves_with_levels(
    fitted: RQVAE, synthetic_blobs: np.ndarray
) -> None:
    codes = fitted.transform(synthetic_blobs)
    errors = [
        float(np.mean((fitted.inverse_transform(codes, n_levels=level) - synthetic_blobs) ** 2))
        for level in (1, 2, 3)
    ]
    assert errors[0] > errors[1] > errors[2], errors


def test_training_reduces_reconstruction_loss(fitted: RQVAE) -> None:
    history = fitted.loss_history_
    assert len(history) == SMALL["epochs"]
    assert history[-1]["reconstruction"] < 0.5 * history[0]["reconstruction"]
    assert all(np.isfinite(list(h.values())).all() for h in history)


def test_dead_code_reseeding_raises_utilisation(synthetic_blobs: np.ndarray) -> None:
    # N(0, 1) codebooks sit far from the encoder's latents, so most codes never win: the
    # situation re-seeding exists for.
    without = small_rqvae(codebook_init="random", reseed_dead_codes=False).fit(synthetic_blobs)
    with_reseed = small_rqvae(codebook_init="random", reseed_dead_codes=True).fit(synthetic_blobs)
    assert without.dead_codes_reseeded_ == [0, 0, 0]
    assert sum(with_reseed.dead_codes_reseeded_) > 0
    assert np.mean(with_reseed.utilisation_) > np.mean(without.utilisation_) + 0.3
    assert all(0 < u <= 1 for u in with_reseed.utilisation_)
    # The utilisation it reports is the real one on the training items.
    codes = with_reseed.transform(synthetic_blobs)
    assert with_reseed.utilisation_ == [len(np.unique(codes[:, lvl])) / 16 for lvl in range(3)]


# ---- determinism ------------------------------------------------------------------------------
def test_same_seed_same_codes(synthetic_blobs: np.ndarray) -> None:
    a = small_rqvae(seed=3).fit(synthetic_blobs)
    b = small_rqvae(seed=3).fit(synthetic_blobs)
    codes_a, codes_b = a.transform(synthetic_blobs), b.transform(synthetic_blobs)
    np.testing.assert_array_equal(codes_a, codes_b)
    np.testing.assert_array_equal(a.inverse_transform(codes_a), b.inverse_transform(codes_b))
    assert a.loss_history_ == b.loss_history_
    other = small_rqvae(seed=4).fit(synthetic_blobs)
    assert not np.array_equal(other.transform(synthetic_blobs), codes_a)


def test_fit_leaves_global_torch_state_alone(synthetic_blobs: np.ndarray) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small_rqvae(epochs=1).fit(synthetic_blobs)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())
    assert not torch.are_deterministic_algorithms_enabled()


def test_fits_on_a_seeded_sample(synthetic_blobs: np.ndarray) -> None:
    q = small_rqvae(max_train_items=500, epochs=2).fit(synthetic_blobs)
    assert q.n_fit_rows_ == len(synthetic_blobs)
    # The sample decides the input statistics: they differ from the full matrix's.
    assert not np.allclose(q.input_mean_, synthetic_blobs.mean(0))


# ---- persistence ------------------------------------------------------------------------------
def test_save_load_round_trip(fitted: RQVAE, synthetic_blobs: np.ndarray, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    for loader in (RQVAE.load, BaseQuantizer.load):
        loaded = loader(tmp_path / "m")
        assert isinstance(loaded, RQVAE)
        codes = fitted.transform(synthetic_blobs)
        np.testing.assert_array_equal(loaded.transform(synthetic_blobs), codes)
        for level in (1, 3):
            np.testing.assert_array_equal(
                loaded.inverse_transform(codes, n_levels=level),
                fitted.inverse_transform(codes, n_levels=level),
            )
        assert loaded.utilisation_ == fitted.utilisation_
        assert loaded.loss_history_ == fitted.loss_history_
        assert loaded.get_params()["hidden_dims"] == list(SMALL["hidden_dims"])
    # No pickle: every array loads with allow_pickle=False (the base checks it).
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["kind"] == "RQVAE" and "state.npz" in manifest["files"]


def test_load_detects_corrupted_weights(fitted: RQVAE, tmp_path) -> None:
    path = fitted.save(tmp_path / "m")
    state = path / "state.npz"
    blob = bytearray(state.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    state.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"state\.npz"):
        RQVAE.load(path)


def test_transform_reads_npy_files(fitted: RQVAE, synthetic_blobs: np.ndarray, tmp_path) -> None:
    np.save(tmp_path / "x.npy", synthetic_blobs)
    np.testing.assert_array_equal(
        fitted.transform(tmp_path / "x.npy"), fitted.transform(synthetic_blobs)
    )


# ---- bad input --------------------------------------------------------------------------------
def test_unfitted_raises() -> None:
    q = RQVAE()
    with pytest.raises(NotFittedError, match="not fitted"):
        q.transform(np.zeros((4, 8), np.float32))
    with pytest.raises(NotFittedError):
        q.inverse_transform(np.zeros((4, 3), np.int32))


def test_dimension_mismatch_names_both_widths(fitted: RQVAE) -> None:
    with pytest.raises(InputError, match=r"31 columns.*fitted on 32"):
        fitted.transform(np.zeros((5, 31), np.float32))


def test_nan_rows_are_named_or_dropped(synthetic_blobs: np.ndarray) -> None:
    x = synthetic_blobs.copy()
    x[[7, 42]] = np.nan
    with pytest.raises(InputError, match="rows 7, 42"):
        small_rqvae(epochs=1).fit(x)
    q = small_rqvae(epochs=1, on_invalid="drop").fit(x)
    assert q.n_fit_rows_ == len(x) - 2
    with pytest.raises(InputError, match="rows 7, 42"):
        q.transform(x)


def test_fewer_items_than_codes(synthetic_blobs: np.ndarray) -> None:
    with pytest.raises(InputError, match="cannot learn 16 codes per level from 10 items"):
        small_rqvae().fit(synthetic_blobs[:10])


def test_out_of_range_codes(fitted: RQVAE) -> None:
    with pytest.raises(InputError, match="row 1, level 2"):
        fitted.inverse_transform(np.array([[0, 0, 0], [0, 0, 16]]))
    with pytest.raises(InputError, match="n_levels"):
        fitted.inverse_transform(np.zeros((2, 3), np.int64), n_levels=4)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("beta", -1.0),
        ("hidden_dims", (8, 0)),
        ("hidden_dims", 64),
        ("lr", True),
        ("codebook_init", "uniform"),
        ("codebook_size", [8, 8]),
        ("latent_dim", 2.5),
    ],
)
def test_bad_parameters_raise_input_error(
    synthetic_blobs: np.ndarray, param: str, value: object
) -> None:
    with pytest.raises(InputError, match=param if param != "codebook_size" else "n_levels"):
        small_rqvae(**{param: value}).fit(synthetic_blobs)


def test_bad_device_raises_config_error(synthetic_blobs: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="device"):
        small_rqvae(device="tpu").fit(synthetic_blobs)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            small_rqvae(device="cuda").fit(synthetic_blobs)
    q = small_rqvae(device="auto", epochs=1).fit(synthetic_blobs)
    assert q.device_.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_model_saved_on_gpu_loads_on_cpu(
    fitted: RQVAE, synthetic_blobs: np.ndarray, tmp_path
) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback, which only happens without a GPU")
    fitted.save(tmp_path / "m")
    manifest_path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["device"] = "cuda"  # as if trained on a GPU machine
    manifest["manifest_sha256"] = manifest_digest(manifest)  # ... and sealed there
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="using the CPU"):
        loaded = RQVAE.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.transform(synthetic_blobs), fitted.transform(synthetic_blobs)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_is_deterministic(synthetic_blobs: np.ndarray) -> None:
    a = small_rqvae(device="cuda").fit(synthetic_blobs)
    b = small_rqvae(device="cuda").fit(synthetic_blobs)
    np.testing.assert_array_equal(a.transform(synthetic_blobs), b.transform(synthetic_blobs))
    assert mean_cosine(synthetic_blobs, a.inverse_transform(a.transform(synthetic_blobs))) > 0.8


# ---- scale ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_architecture_on_20k_x_384_synthetic() -> None:
    """SYNTHETIC 20k x 384 L2-normalised mixture, default network, a short schedule."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(200, 384)).astype(np.float32)
    x = centers[rng.integers(0, 200, 20_000)] + rng.normal(size=(20_000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = RQVAE(epochs=4, seed=0).fit(x)
    codes = q.transform(x)
    assert codes.shape == (20_000, 3) and codes.max() < 128
    recon = q.inverse_transform(codes)
    mean_baseline = np.broadcast_to(x.mean(0), x.shape)
    assert mean_cosine(x, recon) > mean_cosine(x, mean_baseline) + 0.2
    assert min(q.utilisation_) > 0.5
