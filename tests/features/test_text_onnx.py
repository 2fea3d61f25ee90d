"""ONNX Runtime backends of the MiniLM text encoder against the torch backend, on REAL texts
(the Last.fm-2k artist strings carried in src/psrq/_data/lastfm-2k, built as the benchmarks do)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from psrq.errors import InputError
from psrq.features.text import OnnxTextEncoder, load_text_encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_features import lastfm_texts


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return lastfm_texts(120)


@pytest.fixture(scope="module")
def torch_vectors(texts) -> np.ndarray:
    return load_text_encoder(None, backend="torch").encode(texts)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_fp32_matches_torch(texts, torch_vectors, onnx_dir):
    enc = load_text_encoder(None, backend="onnx", onnx_dir=onnx_dir)
    assert (
        isinstance(enc, OnnxTextEncoder)
        and (onnx_dir / enc.onnx_path.parent.name / "model.onnx").is_file()
    )
    vecs = enc.encode(texts)
    assert vecs.shape == torch_vectors.shape and vecs.dtype == np.float32
    assert cosines(vecs, torch_vectors).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # The cached export is reused: a second encoder does not write a new file.
    mtime = enc.onnx_path.stat().st_mtime_ns
    again = load_text_encoder(None, backend="onnx", onnx_dir=onnx_dir)
    assert again.onnx_path == enc.onnx_path and enc.onnx_path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.encode(texts[:10]), vecs[:10])


def test_onnx_int8_stays_close_to_torch(texts, torch_vectors, onnx_dir):
    enc = load_text_encoder(None, backend="onnx-int8", onnx_dir=onnx_dir)
    cos = cosines(enc.encode(texts), torch_vectors)
    # Measured on 2,000 Last.fm-2k texts: min 0.984, mean 0.993 (benchmarks/RESULTS.md).
    assert cos.mean() > 0.985 and cos.min() > 0.97
    assert enc.fingerprint != load_text_encoder(None, backend="onnx", onnx_dir=onnx_dir).fingerprint


def test_unknown_backend_is_named():
    with pytest.raises(InputError, match="unknown text backend"):
        load_text_encoder(None, backend="tensorrt")
