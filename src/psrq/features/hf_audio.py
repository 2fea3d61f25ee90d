"""Audio encoders from a local Hugging Face model directory (MERT-v1-95M, HuBERT, wav2vec 2.0).

The track vector is the mean over time of one hidden layer. Audio is resampled to the model's
sampling rate (the feature extractor's `sampling_rate`, 24 kHz for MERT-v1-95M) and cut into
windows of at most `window_seconds` (MERT was trained on 5-s crops; attention cost grows with the
square of the length), and the mean runs over the frames of all windows together.

The real MERT ships its own modelling code (`MERTModel` via `auto_map` in config.json), so it
needs `trust_remote_code=True`: only pass it for a directory whose code you trust.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from psrq.errors import ArtifactError, InputError
from psrq.features.audio_io import load_batch_item
from psrq.features.base import fingerprint_model_dir


def _needs_remote_code(model_dir: Path) -> bool:
    cfg = model_dir / "config.json"
    try:
        return "auto_map" in json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return False


class HFAudioEncoder:
    """Mean over time of hidden layer `layer` of a local HF audio model.

    `encode(batch)`: file paths or mono float32 waveforms at `sample_rate` -> float32 [b, hidden].
    `layer` indexes `hidden_states` (0 = the CNN feature projection, -1 = the last layer).
    """

    modality = "audio"

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        layer: int = -1,
        window_seconds: float = 30.0,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InputError(
                f"{self.model_dir}: not a Hugging Face model directory (config.json missing)"
            )
        if _needs_remote_code(self.model_dir) and not trust_remote_code:
            raise InputError(
                f"{self.model_dir} ships its own model code (config.json has auto_map, as MERT does); "
                "pass trust_remote_code=True (CLI: --trust-remote-code) if you trust that directory"
            )
        try:
            config = AutoConfig.from_pretrained(self.model_dir, trust_remote_code=trust_remote_code)
            self.model = AutoModel.from_pretrained(
                self.model_dir, trust_remote_code=trust_remote_code, torch_dtype=torch.float32
            ).eval()
            try:
                self.extractor: Any = AutoFeatureExtractor.from_pretrained(
                    self.model_dir, trust_remote_code=trust_remote_code
                )
            except (OSError, ValueError):
                self.extractor = None  # no preprocessor_config.json: feed raw samples
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{self.model_dir}: cannot load the audio model ({e})") from e
        rate = getattr(self.extractor, "sampling_rate", None) or getattr(
            config, "sampling_rate", None
        )
        if not rate:
            raise ArtifactError(
                f"{self.model_dir}: no sampling rate found (preprocessor_config.json 'sampling_rate')"
            )
        self.sample_rate = int(rate)
        n_layers = int(getattr(config, "num_hidden_layers", 0)) + 1  # + the input projection
        if not -n_layers <= layer < n_layers:
            raise InputError(
                f"layer {layer} does not exist in {self.model_dir}: hidden_states has {n_layers} entries "
                f"(0..{n_layers - 1}, or negative from the end)"
            )
        self.layer = layer
        self.window_seconds = window_seconds
        self.dim = int(config.hidden_size)
        self.name = f"hf-audio:{self.model_dir.name} (layer {layer}, mean over time)"
        self.trust_remote_code = trust_remote_code

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_model_dir(
            self.model_dir, extra=f"hf-audio-v1|layer={self.layer}|window={self.window_seconds}"
        )

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        # Convolutional feature encoders need a minimum length: repeat-pad clips under 1 s.
        if len(wave) < self.sample_rate:
            wave = np.tile(wave, -(-self.sample_rate // len(wave)))[: self.sample_rate]
        size = max(int(self.window_seconds * self.sample_rate), 1)
        wins = [wave[s : s + size] for s in range(0, len(wave), size)]
        # A very short tail window would give one or two frames of noise: fold it into the previous.
        if len(wins) > 1 and len(wins[-1]) < size // 4:
            tail = wins.pop()
            wins[-1] = np.concatenate([wins[-1], tail])
        return wins

    def _encode_wave(self, wave: np.ndarray) -> np.ndarray:
        import torch

        frames = []
        for win in self._windows(wave):
            if self.extractor is not None:
                inputs = self.extractor(win, sampling_rate=self.sample_rate, return_tensors="pt")
                values = inputs["input_values"]
            else:
                values = torch.from_numpy(win).unsqueeze(0)
            with torch.no_grad():
                out = self.model(values, output_hidden_states=True)
            frames.append(out.hidden_states[self.layer][0])  # [n_frames, hidden]
        return torch.cat(frames).mean(0).float().numpy()

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        vecs = [
            self._encode_wave(load_batch_item(x, self.sample_rate, i)) for i, x in enumerate(batch)
        ]
        if not vecs:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(vecs).astype(np.float32, copy=False)
