"""Text encoders: MiniLM from the installed package, local HF models built from configs, the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from psrq.errors import InputError
from psrq.features.text import HFTextEncoder, encode_texts, load_text_encoder

from .tiny_models import build_tiny_bert


def test_minilm_dimensions_norm_and_meaning(minilm) -> None:
    texts = [
        "Miles Davis. Tags: jazz, trumpet, bebop, cool jazz",
        "Chet Baker. Tags: jazz, trumpet, vocal jazz",
        "Slayer. Tags: thrash metal, metal, heavy metal",
    ]
    x = minilm.encode(texts)
    assert minilm.dim == 384 and x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x @ x.T
    assert (
        sims[0, 1] > sims[0, 2] + 0.2
    )  # two jazz trumpeters are closer than jazz and thrash metal
    assert "all-MiniLM-L6-v2" in minilm.name


def test_hf_mean_pooling_ignores_padding(tiny_bert_dir: Path) -> None:
    enc = HFTextEncoder(tiny_bert_dir, normalize=False)
    short = "radiohead . tags rock"
    long = "the band radiohead . tags alternative rock british indie electronic guitar rock pop"
    alone = enc.encode([short])
    padded = enc.encode([long, short])[1]  # the short text is padded to the long one's length
    np.testing.assert_allclose(alone[0], padded, rtol=1e-4, atol=1e-5)
    # And it is the plain mean of the last hidden layer over the real tokens.
    tok = enc.tokenizer([short], return_tensors="pt")
    with torch.no_grad():
        manual = enc.model(**tok).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(alone[0], manual, rtol=1e-4, atol=1e-5)


def test_hf_llama_without_pad_token(tiny_llama_dir: Path) -> None:
    enc = load_text_encoder(tiny_llama_dir)
    assert isinstance(enc, HFTextEncoder) and enc.dim == 32
    x = enc.encode(["jazz trumpet", "rock guitar band . tags metal indie"])
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode(["jazz trumpet"])[0], x[0], rtol=1e-4, atol=1e-5)


def test_cache_makes_reruns_instant_and_identical(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = HFTextEncoder(tiny_bert_dir)
    texts = ["rock band", "jazz trumpet", "rock band", "folk guitar"]
    first, hits1 = encode_texts(enc, texts, cache_dir=tmp_path, progress=False)
    calls: list[int] = []
    original = enc.encode
    enc.encode = lambda batch: calls.append(len(batch)) or original(batch)  # count model calls
    second, hits2 = encode_texts(enc, texts, cache_dir=tmp_path, progress=False)
    assert hits1 == 0 and hits2 == 4 and calls == []
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[0], first[2])


def test_cache_is_not_stale_when_the_model_changes(tmp_path: Path) -> None:
    model_dir = build_tiny_bert(tmp_path / "model", seed=0)
    texts = ["rock band", "jazz trumpet"]
    enc_a = HFTextEncoder(model_dir)
    a, _ = encode_texts(enc_a, texts, cache_dir=tmp_path / "cache", progress=False)
    shutil.rmtree(model_dir)
    build_tiny_bert(model_dir, seed=1)  # same path, new weights
    enc_b = HFTextEncoder(model_dir)
    assert enc_b.fingerprint != enc_a.fingerprint
    b, hits = encode_texts(enc_b, texts, cache_dir=tmp_path / "cache", progress=False)
    assert hits == 0
    assert np.abs(a - b).max() > 1e-3
    # Settings that change the vectors are part of the key too.
    assert HFTextEncoder(model_dir, normalize=False).fingerprint != enc_b.fingerprint


def test_bad_models_and_batches(tmp_path: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(InputError, match="not a local directory"):
        load_text_encoder(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"config\.json missing"):
        load_text_encoder(tmp_path / "empty")
    with pytest.raises(InputError, match="not strings"):
        HFTextEncoder(tiny_bert_dir).encode(["ok", None])
