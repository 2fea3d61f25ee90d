"""Fixtures for the features tests: small real models built from configs, and real audio clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .tiny_models import build_tiny_bert, build_tiny_llama, write_wav

# Seven helpers share two cores: keep torch from oversubscribing them.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def msd_encoder():
    from psrq.features.musicnn import MusicnnEncoder

    return MusicnnEncoder("musicnn-msd")


@pytest.fixture(scope="session")
def mtt_encoder():
    from psrq.features.musicnn import MusicnnEncoder

    return MusicnnEncoder("musicnn-mtt")


@pytest.fixture(scope="session")
def clip_paths(audio_clips_dir: Path) -> dict[str, Path]:
    """The real clips carried in data/audio-clips, by short name."""
    names = {
        "brahms": "Hungarian_Dance_number_5",
        "fishin": "Karissa_Hobbs",
        "tchaikovsky": "Tchaikovsky",
        "vibe_ace": "Vibe_Ace",
        "trumpet": "solo-trumpet",
    }
    files = sorted(audio_clips_dir.glob("*.ogg"))
    out = {}
    for short, needle in names.items():
        match = [f for f in files if needle in f.name]
        assert len(match) == 1, f"expected one clip matching {needle} in {audio_clips_dir}"
        out[short] = match[0]
    return out


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """SYNTHETIC: 4 s of a 440 Hz tone with a 3 Hz tremolo at 22.05 kHz."""
    rate = 22_050
    t = np.arange(int(4 * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return write_wav(tmp_path / "tone.wav", wave, rate)


@pytest.fixture
def silent_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "silent.wav", np.zeros(16_000), 16_000)


@pytest.fixture
def corrupt_audio(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.ogg"
    path.write_bytes(b"OggS" + bytes(range(256)) * 8)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def minilm():
    from psrq.features.text import load_text_encoder

    return load_text_encoder()
