"""Decoding audio files: soundfile (libsndfile) -> float32 mono -> resampled with soxr.

Formats are whatever the installed libsndfile reads: WAV, FLAC, OGG/Vorbis, Opus, and MP3 from
libsndfile 1.1 on. A file that cannot be decoded, is empty, or is silent raises
`AudioDecodeError` naming the file; catalogue-level code catches it and records a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from psrq.errors import InputError

# Peak amplitude at or below which a decoded file counts as silent (-80 dBFS). Silence carries
# no musical content; embedding it would give every silent item the same meaningless vector.
SILENCE_PEAK = 1e-4

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})


class AudioDecodeError(InputError):
    """An audio file is unreadable, empty or silent. `reason` is one of those three words."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason} audio" + (f" ({detail})" if detail else ""))


def decode_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Read `path`, downmix to mono, resample to `sample_rate`. Returns float32 [n_samples].

    Raises AudioDecodeError (reason 'unreadable', 'empty' or 'silent') naming the file.
    """
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(p, "unreadable", "file not found")
    try:
        data, file_rate = sf.read(p, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioDecodeError(p, "unreadable", str(e).strip() or type(e).__name__) from e
    if data.shape[0] == 0:
        raise AudioDecodeError(p, "empty", "no samples")
    mono = data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioDecodeError(p, "unreadable", "decoded samples contain NaN or inf")
    if float(np.abs(mono).max()) <= SILENCE_PEAK:
        raise AudioDecodeError(p, "silent", f"peak amplitude <= {SILENCE_PEAK:g}")
    return resample(mono, int(file_rate), sample_rate)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 [n] at `from_rate` -> float32 [m] at `to_rate` (soxr, high quality)."""
    if from_rate == to_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    return soxr.resample(wave, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def check_waveform(wave: np.ndarray, name: str) -> np.ndarray:
    """Validate an in-memory mono waveform; raise AudioDecodeError naming it when unusable."""
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim != 1:
        raise InputError(
            f"{name}: a waveform must be mono float [n_samples], got shape {arr.shape}"
        )
    if arr.size == 0:
        raise AudioDecodeError(name, "empty", "no samples")
    if not np.isfinite(arr).all():
        raise AudioDecodeError(name, "unreadable", "samples contain NaN or inf")
    if float(np.abs(arr).max()) <= SILENCE_PEAK:
        raise AudioDecodeError(name, "silent", f"peak amplitude <= {SILENCE_PEAK:g}")
    return arr


def load_batch_item(item: object, sample_rate: int, index: int) -> np.ndarray:
    """One element of an audio `encode` batch: a path (decoded) or a waveform at `sample_rate`."""
    if isinstance(item, str | os.PathLike):
        return decode_audio(item, sample_rate)
    return check_waveform(np.asarray(item), f"waveform #{index}")
