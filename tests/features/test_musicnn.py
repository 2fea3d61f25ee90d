"""musicnn in PyTorch: the front end against librosa, the two upstream bugs, and real clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from psrq.features.audio_io import AudioDecodeError, decode_audio
from psrq.features.musicnn import PATCH_FRAMES, LogMel, slaney_mel_filterbank, to_patches

CLIP_SECONDS = 30  # the first 30 s of each clip: enough for stable tags, a third of the compute


@pytest.fixture(scope="module")
def clip_waves(clip_paths) -> dict[str, np.ndarray]:
    return {n: decode_audio(p, 16_000)[: CLIP_SECONDS * 16_000] for n, p in clip_paths.items()}


def test_mel_filterbank_matches_librosa() -> None:
    import librosa

    ref = librosa.filters.mel(sr=16_000, n_fft=512, n_mels=96)
    np.testing.assert_allclose(slaney_mel_filterbank(), ref, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_logmel_matches_librosa_melspectrogram() -> None:
    import librosa

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16_000 * 2)).astype(np.float32)  # SYNTHETIC noise
    ours = LogMel()(torch.from_numpy(wave)).numpy()
    mel = librosa.feature.melspectrogram(
        y=wave, sr=16_000, n_fft=512, hop_length=256, n_mels=96, pad_mode="reflect"
    ).T
    ref = np.log10(10000 * mel + 1)
    assert ours.shape == ref.shape == (126, 96)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_float32_front_end_survives_loud_audio() -> None:
    """Upstream casts the mel to float16 before x10000: a full-scale signal overflows to inf."""
    t = np.arange(16_000 * 4) / 16_000
    loud = np.sign(np.sin(2 * np.pi * 100 * t)).astype(
        np.float32
    )  # SYNTHETIC full-scale square wave
    logmel = LogMel()(torch.from_numpy(loud))
    mel = (10 ** logmel.double() - 1) / 10000
    assert torch.isfinite(logmel).all()
    with np.errstate(over="ignore"):
        upstream = np.log10(10000 * mel.numpy().astype(np.float16) + 1)  # musicnn's batch_data
    assert not np.isfinite(upstream).all(), (
        "the float16 overflow this test guards against did not occur"
    )


def test_patches_cut_and_repeat_pad() -> None:
    x = torch.arange(400 * 96, dtype=torch.float32).reshape(400, 96)
    p = to_patches(x)
    assert p.shape == (2, PATCH_FRAMES, 96)  # 400 frames: two 187-frame patches, tail dropped
    assert torch.equal(p[1, 0], x[PATCH_FRAMES])
    short = to_patches(x[:50])
    assert short.shape == (1, PATCH_FRAMES, 96)
    assert torch.equal(short[0, 50], x[0]) and torch.equal(short[0, 186], x[186 % 50])


def test_batched_patches_equal_one_at_a_time(msd_encoder, clip_paths) -> None:
    """Upstream's batch-size-1 loop returned the first patch's penultimate for every patch."""
    wave = decode_audio(clip_paths["vibe_ace"], 16_000)[: 16_000 * 9]
    patches = msd_encoder.patches(wave)
    assert patches.shape[0] == 3
    emb_all, prob_all = msd_encoder.run_patches(patches)
    singles = [msd_encoder.run_patches(patches[i : i + 1]) for i in range(3)]
    emb_one = torch.cat([e for e, _ in singles])
    torch.testing.assert_close(emb_all, emb_one, rtol=1e-4, atol=1e-5)
    # Patches are different music, so their embeddings must differ (stale copies would not).
    assert (emb_all[1:] - emb_all[0]).abs().amax(dim=1).min() > 1e-2
    assert torch.all((prob_all >= 0) & (prob_all <= 1))


def test_encode_accepts_paths_and_waveforms(msd_encoder, tone_wav: Path) -> None:
    from psrq.features.base import Encoder

    assert isinstance(msd_encoder, Encoder) and msd_encoder.modality == "audio"
    from_path = msd_encoder.encode([tone_wav])
    wave = decode_audio(tone_wav, 16_000)
    from_wave = msd_encoder.encode([wave])
    assert from_path.shape == (1, 200) and from_path.dtype == np.float32
    np.testing.assert_allclose(from_path, from_wave, rtol=1e-5, atol=1e-6)


def test_single_file_errors_name_the_file(
    msd_encoder, silent_wav: Path, corrupt_audio: Path, tmp_path: Path
) -> None:
    with pytest.raises(AudioDecodeError, match=r"silent\.wav: silent"):
        msd_encoder.encode([silent_wav])
    with pytest.raises(AudioDecodeError, match=r"corrupt\.ogg: unreadable"):
        msd_encoder.encode([corrupt_audio])
    with pytest.raises(AudioDecodeError, match=r"nope\.wav: unreadable"):
        msd_encoder.encode([tmp_path / "nope.wav"])


def _rank(tags: list[str], prob: np.ndarray, tag: str) -> int:
    return int(np.argsort(-prob).tolist().index(tags.index(tag)))


@pytest.mark.slow
def test_real_clips_mtt_tags_and_neighbours(mtt_encoder, clip_waves) -> None:
    names = list(clip_waves)
    emb, prob = mtt_encoder.encode_with_tags([clip_waves[n] for n in names])
    tags = mtt_encoder.tag_names
    top = {n: [tags[i] for i in np.argsort(-prob[k])[:3]] for k, n in enumerate(names)}
    brahms = prob[names.index("brahms")]
    # A string orchestra: classical and the bowed-string tags lead.
    assert set(top["brahms"]) <= {"classical", "violin", "strings", "classic", "cello"}, top[
        "brahms"
    ]
    assert _rank(tags, brahms, "classical") < 3
    assert brahms[tags.index("violin")] > 5 * brahms[tags.index("techno")]
    # A sung pop/folk song: voice tags in the top five, "no vocals" not.
    fishin = prob[names.index("fishin")]
    assert min(_rank(tags, fishin, t) for t in ("female", "vocal", "woman", "singing")) < 5
    assert fishin[tags.index("vocal")] > fishin[tags.index("no vocals")]
    # Nearest neighbour of the Brahms string orchestra among the clips: Tchaikovsky.
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    assert names[int(sims[names.index("brahms")].argmax())] == "tchaikovsky"


@pytest.mark.slow
def test_real_clips_msd_tags(msd_encoder, clip_waves) -> None:
    names = ["trumpet", "fishin", "brahms"]
    _, prob = msd_encoder.encode_with_tags([clip_waves[n] for n in names])
    tags = msd_encoder.tag_names
    trumpet, fishin, brahms = prob
    assert tags[int(trumpet.argmax())] == "jazz"  # solo jazz trumpet
    assert msd_encoder.top_tags(clip_waves["trumpet"], k=1)[0][0] == "jazz"
    assert trumpet[tags.index("jazz")] > 10 * trumpet[tags.index("metal")]
    assert min(_rank(tags, fishin, t) for t in ("female vocalists", "folk", "acoustic")) < 3
    assert _rank(tags, brahms, "instrumental") < 3
    assert brahms[tags.index("instrumental")] > brahms[tags.index("female vocalists")]
