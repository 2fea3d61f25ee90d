"""Quantizer model directories: atomic, manifest + checksums, and every broken-dir case fails loudly.

Models are fitted on SYNTHETIC data (the synthetic_blobs fixture).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import psrq
from psrq.artifacts import (
    FORMAT_VERSION,
    MANIFEST_DIGEST,
    atomic_path,
    manifest_digest,
    read_model_dir,
    sha256_file,
    write_json,
)
from psrq.errors import ArtifactError
from psrq.quantize.base import BaseQuantizer

NAMES = ["VQ", "PQ", "RQKMeans", "PSRQ"]


def fitted(name: str, x: np.ndarray):
    kw = {"codebook_size": [4, 8, 8] if name in ("RQKMeans", "PSRQ") else 8, "niter": 6, "seed": 3}
    if name == "PSRQ":
        kw["prefix_weight"] = 0.5
    return getattr(psrq, name)(**kw).fit(x)


@pytest.fixture
def saved_psrq(tmp_path, synthetic_blobs):
    q = fitted("PSRQ", synthetic_blobs)
    return q, q.save(tmp_path / "psrq_model")


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_gives_identical_codes_and_reconstructions(name, tmp_path, synthetic_blobs):
    q = fitted(name, synthetic_blobs)
    path = q.save(tmp_path / name)
    back = type(q).load(path)
    assert type(back) is type(q) and back.get_params() == q.get_params()
    codes = q.transform(synthetic_blobs)
    np.testing.assert_array_equal(back.transform(synthetic_blobs), codes)
    for used in range(1, q.n_levels_ + 1):
        np.testing.assert_array_equal(
            back.inverse_transform(codes, n_levels=used), q.inverse_transform(codes, n_levels=used)
        )
    assert back.dim_ == q.dim_ and back.codebook_sizes_ == q.codebook_sizes_
    assert back.n_fit_rows_ == q.n_fit_rows_ and back.input_fingerprint_ == q.input_fingerprint_


def test_generic_load_dispatches_on_kind(tmp_path, synthetic_blobs):
    for name in NAMES:
        path = fitted(name, synthetic_blobs).save(tmp_path / name)
        assert type(BaseQuantizer.load(path)).__name__ == name


def test_manifest_records_version_params_seed_fingerprint_and_checksums(saved_psrq):
    q, path = saved_psrq
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["kind"] == "PSRQ"
    assert manifest["params"] == q.get_params()
    assert manifest["params"]["prefix_weight"] == 0.5
    assert manifest["seed"] == 3
    assert manifest["input_fingerprint"] == q.input_fingerprint_
    assert manifest["fitted"] == {"dim_": 32, "codebook_sizes_": [4, 8, 8], "n_fit_rows_": 2000}
    assert manifest["files"] == {"state.npz": sha256_file(path / "state.npz")}
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "state.npz"]


def test_corrupted_state_fails(saved_psrq):
    _, path = saved_psrq
    state = path / "state.npz"
    with np.load(state) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["codebook_1"][0, 0] += 1.0  # an edited codebook: still a valid npz, wrong checksum
    np.savez(state, **arrays)
    with pytest.raises(ArtifactError, match=r"file state\.npz is corrupted"):
        psrq.PSRQ.load(path)


def test_truncated_dir_fails(saved_psrq):
    _, path = saved_psrq
    (path / "state.npz").unlink()
    with pytest.raises(ArtifactError, match=r"file state\.npz listed in the manifest is missing"):
        psrq.PSRQ.load(path)
    (path / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        psrq.PSRQ.load(path)


def test_missing_dir_fails(tmp_path):
    with pytest.raises(ArtifactError, match="model directory not found"):
        psrq.RQKMeans.load(tmp_path / "nothing")


def test_wrong_kind_fails(saved_psrq):
    _, path = saved_psrq
    with pytest.raises(ArtifactError, match="holds a 'PSRQ' model, expected RQKMeans"):
        psrq.RQKMeans.load(path)  # PSRQ subclasses RQKMeans: the kind check must still refuse


def test_wrong_version_fails(saved_psrq):
    _, path = saved_psrq
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"format_version {FORMAT_VERSION + 1}"):
        psrq.PSRQ.load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["params"].update(bogus=1), "manifest params do not fit PSRQ"),
        (lambda m: m.pop("fitted"), "no valid 'fitted' section"),
        (
            lambda m: m["fitted"].update(codebook_sizes_=[4, 8, 16]),
            r"codebook_2 has shape \(8, 64\)",
        ),
        (lambda m: m["fitted"].update(dim_=31), "codebook_0 has shape"),
        (lambda m: m.update(kind="Nope"), "unknown quantizer kind 'Nope'"),
    ],
)
def test_hand_edited_manifest_fails_with_artifact_error(saved_psrq, edit, message):
    _, path = saved_psrq
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    # Re-sealed: a crafted manifest that passes the integrity check must still be refused.
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    loader = BaseQuantizer if "kind" in message else psrq.PSRQ
    with pytest.raises(ArtifactError, match=message):
        loader.load(path)


def test_unreadable_manifest_fails(saved_psrq):
    _, path = saved_psrq
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json is corrupted"):
        psrq.PSRQ.load(path)


def test_save_replaces_an_existing_model_atomically(tmp_path, synthetic_blobs):
    path = tmp_path / "model"
    old = fitted("RQKMeans", synthetic_blobs)
    old.save(path)
    new = psrq.RQKMeans(codebook_size=8, niter=6, seed=9).fit(synthetic_blobs)
    new.save(path)
    np.testing.assert_array_equal(psrq.RQKMeans.load(path).codebooks_[0], new.codebooks_[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporaries left behind


def test_failed_save_leaves_the_old_model_untouched(tmp_path, synthetic_blobs):
    class FailsWhileSaving(psrq.RQKMeans):
        kind = "RQKMeans"

        def _state(self):
            state = super()._state()
            state["unsaveable"] = object()  # not an array: goes to extra.json, which cannot hold it
            return state

    path = tmp_path / "model"
    good = fitted("RQKMeans", synthetic_blobs)
    good.save(path)
    before = {p.name: sha256_file(p) for p in path.iterdir()}
    broken = FailsWhileSaving(codebook_size=8, niter=6).fit(synthetic_blobs)
    with pytest.raises(TypeError):
        broken.save(path)
    assert {p.name: sha256_file(p) for p in path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    np.testing.assert_array_equal(psrq.RQKMeans.load(path).codebooks_[0], good.codebooks_[0])


def test_atomic_helpers_write_whole_files_or_nothing(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"a": np.int64(1), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 1, "b": 0.5, "c": [0, 1]}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text())["a"] == 1
    with (
        pytest.raises(ArtifactError, match="nothing was written"),
        atomic_path(tmp_path / "empty.txt"),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_read_model_dir_checks_kind_tuple(saved_psrq):
    _, path = saved_psrq
    assert read_model_dir(path, kind=("RQKMeans", "PSRQ"))["kind"] == "PSRQ"
