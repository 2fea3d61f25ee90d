"""musicnn (Pons & Serra, 2019) in PyTorch, loading the TF1 checkpoints shipped in the `musicnn` wheel.

No TensorFlow: the network below re-expresses ``musicnn/models.py`` (``build_musicnn``) layer by
layer and the weights are read from the tensor bundle with `psrq.features.tf_checkpoint`.

Front end (``musicnn/extractor.py`` and ``configuration.py``): 16 kHz mono, STFT with n_fft 512,
hop 256, periodic Hann window, centred frames with reflect padding (librosa < 0.10 default, the
version musicnn was trained with), power spectrogram, 96 Slaney mel bands from
``librosa.filters.mel`` defaults, then ``log10(10000 * mel + 1)``; patches of 187 frames (3 s),
not overlapping; each patch gives a 200-d penultimate embedding and 50 tag probabilities, and a
track is the mean over its patches. Clips shorter than one patch are repeat-padded (musicnn's
training config says ``pad_short: repeat-pad``; upstream's extractor crashes on them).

Two upstream bugs are avoided on purpose:

1. ``batch_data`` casts the mel spectrogram to float16 before ``10000 * mel``: loud audio
   overflows float16 (max 65504) to inf. We compute in float32.
2. ``extractor`` with its default batch size of 1 unpacks later batches into new variable names
   but concatenates the old ones, so every patch after the first gets the first patch's
   penultimate/mid-end features. We run all patches through the network together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from psrq.errors import ArtifactError, InputError
from psrq.features.audio_io import load_batch_item
from psrq.features.base import fingerprint_model_dir

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s, sr=16000, n_fft=512, hop=256) + 1
TF_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default epsilon

MTT_LABELS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano', 'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal', 'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice', 'choral']  # fmt: skip
MSD_LABELS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s', 'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop', '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']  # fmt: skip

CHECKPOINTS = {
    "musicnn-msd": ("MSD_musicnn", MSD_LABELS),
    "musicnn-mtt": ("MTT_musicnn", MTT_LABELS),
}


# ---- front end -------------------------------------------------------------------------------
def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale (librosa's default, htk=False): linear to 1 kHz, log above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> np.ndarray:
    """float32 [n_mels, 1 + n_fft // 2]: ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``
    with its defaults (fmin 0, fmax sr/2, Slaney scale and area normalisation), in plain numpy
    (librosa's version JIT-compiles through numba on first use, seconds on a busy machine)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """Waveform -> musicnn's log-compressed mel spectrogram, in float32 throughout.

    forward: float32 [n_samples] -> float32 [n_frames, 96]
    """

    def __init__(self) -> None:
        super().__init__()
        fb = slaney_mel_filterbank()  # Slaney, 0..8 kHz
        self.register_buffer("mel_fb", torch.from_numpy(fb))  # [96, 257]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # torch.stft's reflect padding needs more samples than n_fft // 2; pad tiny clips first.
        if wave.shape[0] <= N_FFT // 2:
            wave = F.pad(wave, (0, N_FFT // 2 + 1 - wave.shape[0]))
        spec = torch.stft(
            wave,
            N_FFT,
            HOP,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [257, n_frames]
        mel = self.mel_fb @ power  # [96, n_frames]
        return torch.log10(10000.0 * mel + 1.0).T.contiguous()


def to_patches(logmel: torch.Tensor) -> torch.Tensor:
    """[n_frames, 96] -> [n_patches, 187, 96]: non-overlapping 3-s patches, the tail dropped
    (as upstream); clips shorter than one patch are repeat-padded to one patch."""
    n = logmel.shape[0]
    if n < PATCH_FRAMES:
        reps = -(-PATCH_FRAMES // max(n, 1))
        return logmel.repeat(reps, 1)[:PATCH_FRAMES].unsqueeze(0)
    n_patches = n // PATCH_FRAMES
    return logmel[: n_patches * PATCH_FRAMES].reshape(n_patches, PATCH_FRAMES, N_MELS)


# ---- network ---------------------------------------------------------------------------------
class _ConvReluBN(nn.Module):
    """TF order: conv -> ReLU -> batch norm (inference statistics)."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.bn = (
            nn.BatchNorm1d(channels, eps=TF_BN_EPS)
            if isinstance(conv, nn.Conv1d)
            else nn.BatchNorm2d(channels, eps=TF_BN_EPS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusicnnNet(nn.Module):
    """musicnn's `build_musicnn` (front end 7774timbraltemporal, dense mid-end, global-pool back end).

    forward: float32 [batch, 187, 96] (log-mel patches) ->
             (logits [batch, n_tags], penultimate [batch, 200])
    """

    def __init__(
        self, n_tags: int = 50, midend_filters: int = 64, backend_units: int = 200
    ) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=TF_BN_EPS)
        # Timbral: kernels span 7 frames x 40% / 70% of the mel axis, then max over frequency.
        self.timbral = nn.ModuleList(
            _ConvReluBN(nn.Conv2d(1, 204, (7, int(f * N_MELS))), 204) for f in (0.4, 0.7)
        )
        # Temporal: 1-bin-wide kernels over 128 / 64 / 32 frames with TF 'same' padding.
        self.temporal_lengths = (128, 64, 32)
        self.temporal = nn.ModuleList(
            _ConvReluBN(nn.Conv2d(1, 51, (k, 1)), 51) for k in self.temporal_lengths
        )
        front_dim = 2 * 204 + 3 * 51  # 561
        # Mid-end: the TF kernels span the whole feature axis, i.e. 1-D convolutions over time.
        self.midend = nn.ModuleList(
            _ConvReluBN(nn.Conv1d(c, midend_filters, 7), midend_filters)
            for c in (front_dim, midend_filters, midend_filters)
        )
        pooled = 2 * (front_dim + 3 * midend_filters)  # max and mean of 753 features = 1506
        self.pool_bn = nn.BatchNorm1d(pooled, eps=TF_BN_EPS)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = nn.BatchNorm1d(backend_units, eps=TF_BN_EPS)
        self.out = nn.Linear(backend_units, n_tags)

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """[b, T, 96] -> [b, 561, T] (channels first for the 1-D mid-end)."""
        h = self.input_bn(x.unsqueeze(1))  # [b, 1, T, 96]
        padded = F.pad(h, (0, 0, 3, 3))  # time only: 'same' for the 7-frame timbral kernels
        feats = [block(padded).amax(dim=3) for block in self.timbral]  # [b, 204, T] each
        for k, block in zip(self.temporal_lengths, self.temporal, strict=True):
            before = (k - 1) // 2  # TF 'same' puts the extra padding after
            feats.append(block(F.pad(h, (0, 0, before, k - 1 - before))).amax(dim=3))  # [b, 51, T]
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        front = self.frontend(x)  # [b, 561, T]
        c1 = self.midend[0](F.pad(front, (3, 3)))  # [b, 64, T]
        c2 = self.midend[1](F.pad(c1, (3, 3))) + c1
        c3 = self.midend[2](F.pad(c2, (3, 3))) + c2
        dense_in = torch.cat([front, c1, c2, c3], dim=1)  # [b, 753, T]
        # TF concatenates max and mean on a trailing axis and flattens: features interleave as
        # [max_0, mean_0, max_1, mean_1, ...].
        pooled = torch.stack([dense_in.amax(dim=2), dense_in.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))  # [b, 200]
        return self.out(penultimate), penultimate


def _tf_to_torch_names(net: MusicnnNet) -> dict[str, tuple[nn.Module, str]]:
    """TF variable scopes in graph-creation order -> the module that owns them."""
    bns: list[nn.Module] = [net.input_bn]
    convs: list[nn.Module] = []
    for block in [*net.timbral, *net.temporal, *net.midend]:
        convs.append(block.conv)
        bns.append(block.bn)
    bns += [net.pool_bn, net.dense_bn]
    mapping: dict[str, tuple[nn.Module, str]] = {}
    for i, bn in enumerate(bns):
        scope = "batch_normalization" + (f"_{i}" if i else "")
        for tf_name, attr in (
            ("gamma", "weight"),
            ("beta", "bias"),
            ("moving_mean", "running_mean"),
            ("moving_variance", "running_var"),
        ):
            mapping[f"{scope}/{tf_name}"] = (bn, attr)
    for i, conv in enumerate(convs):
        scope = "conv2d" + (f"_{i}" if i else "")
        mapping[f"{scope}/kernel"] = (conv, "weight")
        mapping[f"{scope}/bias"] = (conv, "bias")
    for scope, layer in (("dense", net.dense), ("dense_1", net.out)):
        mapping[f"{scope}/kernel"] = (layer, "weight")
        mapping[f"{scope}/bias"] = (layer, "bias")
    return mapping


def _convert(tf_value: np.ndarray, module: nn.Module, attr: str) -> np.ndarray:
    """TF layouts -> torch layouts: conv [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in]."""
    if attr != "weight" or tf_value.ndim == 1:
        return tf_value
    if isinstance(module, nn.Linear):
        return tf_value.T
    if isinstance(
        module, nn.Conv1d
    ):  # TF kernel [7, features, 1, out]: the width is our channel axis
        return tf_value[:, :, 0, :].transpose(2, 1, 0)
    return tf_value.transpose(3, 2, 0, 1)


def load_musicnn_weights(net: MusicnnNet, checkpoint_dir: str | os.PathLike[str]) -> None:
    """Copy every non-optimizer tensor of a musicnn TF checkpoint into `net`, checking shapes."""
    from psrq.features.tf_checkpoint import read_checkpoint

    tensors = {
        k: v
        for k, v in read_checkpoint(checkpoint_dir).items()
        if "Adam" not in k and k not in ("beta1_power", "beta2_power")
    }
    mapping = _tf_to_torch_names(net)
    missing = sorted(set(mapping) - set(tensors))
    unused = sorted(set(tensors) - set(mapping))
    if missing or unused:
        raise ArtifactError(
            f"{checkpoint_dir}: not a musicnn checkpoint (missing {missing[:5]}, unexpected {unused[:5]})"
        )
    with torch.no_grad():
        for name, (module, attr) in mapping.items():
            target = getattr(module, attr)
            value = torch.from_numpy(np.ascontiguousarray(_convert(tensors[name], module, attr)))
            if tuple(value.shape) != tuple(target.shape):
                raise ArtifactError(
                    f"{checkpoint_dir}: tensor {name} has shape {tuple(value.shape)} after conversion, "
                    f"the network expects {tuple(target.shape)}"
                )
            target.copy_(value)


def musicnn_checkpoint_dir(variant: str) -> Path:
    """Folder of the installed `musicnn` wheel's checkpoint for 'musicnn-msd' or 'musicnn-mtt'."""
    import importlib.util

    if variant not in CHECKPOINTS:
        raise InputError(
            f"unknown musicnn variant {variant!r}; choose one of {sorted(CHECKPOINTS)}"
        )
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(
            "the musicnn weights are not installed: pip install --no-deps musicnn==0.1.0 "
            "(only its checkpoint files are used; TensorFlow is not needed)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / CHECKPOINTS[variant][0]
    if not (folder / ".index").is_file():
        raise ArtifactError(f"musicnn checkpoint missing: {folder / '.index'}")
    return folder


# ---- encoder ---------------------------------------------------------------------------------
class MusicnnEncoder:
    """Audio encoder: track vector = mean over 3-s patches of musicnn's 200-d penultimate layer.

    `encode(batch)` takes file paths or mono float32 waveforms at 16 kHz and returns
    float32 [b, 200]; `encode_with_tags` also returns the mean tag probabilities [b, 50].
    """

    modality = "audio"
    sample_rate = SAMPLE_RATE
    dim = 200

    def __init__(self, variant: str = "musicnn-msd", *, patch_batch: int = 16) -> None:
        self.variant = variant
        self.checkpoint_dir = musicnn_checkpoint_dir(variant)
        self.tag_names: list[str] = list(CHECKPOINTS[variant][1])
        self.name = f"{variant} (penultimate 200-d, mean over 3-s patches)"
        self.patch_batch = patch_batch
        self.net = MusicnnNet(n_tags=len(self.tag_names)).eval()
        load_musicnn_weights(self.net, self.checkpoint_dir)
        self.logmel = LogMel().eval()

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_model_dir(self.checkpoint_dir, extra=f"musicnn-v1|{self.variant}")

    def patches(self, wave: np.ndarray) -> torch.Tensor:
        """float32 [n_samples] at 16 kHz -> [n_patches, 187, 96]."""
        with torch.no_grad():
            return to_patches(
                self.logmel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
            )

    def run_patches(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, 187, 96] -> (penultimate [n, 200], tag probabilities [n, n_tags]), batched."""
        embs, probs = [], []
        with torch.no_grad():
            for start in range(0, patches.shape[0], self.patch_batch):
                logits, pen = self.net(patches[start : start + self.patch_batch])
                embs.append(pen)
                probs.append(torch.sigmoid(logits))
        return torch.cat(embs), torch.cat(probs)

    def encode_with_tags(self, batch: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [b, 200] embeddings, float32 [b, n_tags] mean tag probabilities)."""
        per_item = [self.patches(load_batch_item(x, SAMPLE_RATE, i)) for i, x in enumerate(batch)]
        if not per_item:
            return np.zeros((0, self.dim), np.float32), np.zeros(
                (0, len(self.tag_names)), np.float32
            )
        # All patches of the batch go through the network together (never one at a time).
        emb, prob = self.run_patches(torch.cat(per_item))
        counts = [p.shape[0] for p in per_item]
        emb_mean = torch.stack([e.mean(0) for e in emb.split(counts)])
        prob_mean = torch.stack([p.mean(0) for p in prob.split(counts)])
        return emb_mean.numpy().astype(np.float32), prob_mean.numpy().astype(np.float32)

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        return self.encode_with_tags(batch)[0]

    def top_tags(self, item: Any, k: int = 5) -> list[tuple[str, float]]:
        """The `k` most probable tags of one file or waveform, best first."""
        _, prob = self.encode_with_tags([item])
        order = np.argsort(-prob[0])[:k]
        return [(self.tag_names[i], float(prob[0, i])) for i in order]
