"""Decoding: formats libsndfile reads, downmix, resampling, and the errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from psrq.features.audio_io import AudioDecodeError, check_waveform, decode_audio


def _stereo_tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    """SYNTHETIC: 440 Hz on the left channel, silence on the right."""
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, np.zeros_like(left)], axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")]
)
def test_formats_downmix_and_resample(tmp_path: Path, suffix: str, fmt: str) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    path = tmp_path / f"tone{suffix}"
    sf.write(path, _stereo_tone(44_100), 44_100, format=fmt)
    wave = decode_audio(path, 16_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16_000) <= 1_200  # lossy codecs add encoder delay/padding
    # Mono is the mean of the channels: the 0.5-amplitude tone becomes ~0.25.
    assert 0.2 < np.abs(wave[2_000:-2_000]).max() < 0.3
    spectrum = np.abs(np.fft.rfft(wave[:16_000] if len(wave) >= 16_000 else wave, n=16_000))
    assert abs(int(spectrum.argmax()) - 440) <= 2  # still 440 Hz after resampling


def test_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16_000)
    with pytest.raises(AudioDecodeError, match=r"empty\.wav: empty audio") as info:
        decode_audio(empty, 16_000)
    assert info.value.reason == "empty"
    quiet = tmp_path / "hiss.wav"
    sf.write(quiet, np.full(8_000, 5e-5, np.float32), 16_000)  # -86 dBFS: counts as silence
    with pytest.raises(AudioDecodeError, match=r"hiss\.wav: silent"):
        decode_audio(quiet, 16_000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioDecodeError, match=r"notes\.wav: unreadable"):
        decode_audio(text, 16_000)
    with pytest.raises(AudioDecodeError, match=r"waveform #3: unreadable"):
        check_waveform(np.array([0.1, np.nan], np.float32), "waveform #3")
