"""Audio encoders from a local HF directory (the MERT path), with a tiny wav2vec 2.0 built from a config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from psrq.errors import InputError
from psrq.features.audio_io import AudioDecodeError, decode_audio
from psrq.features.embed import load_audio_encoder
from psrq.features.hf_audio import HFAudioEncoder

from .tiny_models import build_tiny_wav2vec2


@pytest.fixture(scope="module")
def tiny_w2v_dir(tmp_path_factory) -> Path:
    return build_tiny_wav2vec2(tmp_path_factory.mktemp("models") / "tiny-mert")


@pytest.mark.slow
def test_layer_mean_over_time_at_the_model_rate(tiny_w2v_dir: Path, tone_wav: Path) -> None:
    enc = load_audio_encoder(str(tiny_w2v_dir), layer=1)
    assert isinstance(enc, HFAudioEncoder)
    assert enc.sample_rate == 24_000 and enc.dim == 32
    vec = enc.encode([tone_wav])  # a 22.05 kHz file: resampled to 24 kHz inside
    wave = decode_audio(tone_wav, 24_000)
    values = enc.extractor(wave, sampling_rate=24_000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        hidden = enc.model(values, output_hidden_states=True).hidden_states[1][0]
    np.testing.assert_allclose(vec[0], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    last = load_audio_encoder(str(tiny_w2v_dir), layer=-1).encode([wave])
    assert np.abs(last - vec).max() > 1e-3  # a different layer gives a different vector


def test_windows_cover_long_audio(tiny_w2v_dir: Path) -> None:
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(103_200)).astype(np.float32)  # SYNTHETIC noise, 4.3 s
    enc = HFAudioEncoder(tiny_w2v_dir, window_seconds=2.0)
    wins = enc._windows(wave)
    assert [len(w) for w in wins] == [48_000, 55_200]  # the 0.3-s tail folds into the last window
    np.testing.assert_array_equal(np.concatenate(wins), wave)
    assert enc.encode([wave]).shape == (1, 32)


def test_bad_layer_remote_code_and_silence(
    tiny_w2v_dir: Path, tmp_path: Path, silent_wav: Path
) -> None:
    with pytest.raises(InputError, match="layer 7 does not exist"):
        HFAudioEncoder(tiny_w2v_dir, layer=7)
    remote = tmp_path / "remote"
    build_tiny_wav2vec2(remote)
    cfg = json.loads((remote / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_MERT.MERTModel"}
    (remote / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="trust-remote-code"):
        HFAudioEncoder(remote)
    with pytest.raises(AudioDecodeError, match="silent"):
        HFAudioEncoder(tiny_w2v_dir).encode([silent_wav])


def test_catalogue_path_with_a_local_hf_model(
    tiny_w2v_dir: Path, tone_wav: Path, silent_wav: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from psrq.features.base import Encoder
    from psrq.features.embed import embed_audio_items, read_report

    enc = HFAudioEncoder(tiny_w2v_dir)
    assert isinstance(enc, Encoder)
    out = tmp_path / "audio.parquet"
    report = embed_audio_items(
        [("tone", str(tone_wav)), ("quiet", str(silent_wav)), ("none", None)],
        out,
        enc,
        progress=False,
    )
    table = pq.read_table(out)
    assert table.column("item_id").to_pylist() == ["tone"]
    assert table.schema.metadata[b"psrq.dim"] == b"32"
    assert read_report(out) == report and report["skipped_by_reason"] == {
        "silent": 1,
        "no audio": 1,
    }
