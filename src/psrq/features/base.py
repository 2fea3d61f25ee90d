"""The one interface every encoder follows, and helpers shared by text and audio encoders.

An encoder has a `name` (recorded in the output metadata), a `dim`, a `modality` ('text' or
'audio') and `encode(batch) -> float32 [b, dim]`. Text encoders take a batch of strings;
audio encoders take a batch of file paths or mono float waveforms at `encoder.sample_rate`.
`fingerprint` identifies the exact weights and settings, so caches never serve stale vectors.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from psrq.errors import InputError

# Files above this size are fingerprinted by size, mtime and their first and last MiB instead of
# a full SHA-256: hashing a 15 GB Baichuan2 checkpoint on every run would cost minutes, and any
# real change to weights changes their size, their head/tail bytes or at least their mtime.
_FULL_HASH_LIMIT = 64 << 20
_EDGE_BYTES = 1 << 20


@runtime_checkable
class Encoder(Protocol):
    """`encode(batch) -> float32 [len(batch), dim]`."""

    name: str
    dim: int
    modality: str

    @property
    def fingerprint(self) -> str: ...

    def encode(self, batch: Sequence[Any]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise unit length; zero rows stay zero. float32 [b, d] -> float32 [b, d]."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def fingerprint_model_dir(path: str | os.PathLike[str], extra: str = "") -> str:
    """A content fingerprint of a model directory (every file, recursively) plus `extra` settings.

    Small files are hashed in full; large weight files by size, mtime and head/tail bytes.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"model directory not found: {root}")
    h = hashlib.sha256(extra.encode())
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if "/." in f"/{rel}" or "__pycache__" in rel:  # caches and hidden files are not the model
            continue
        st = f.stat()
        h.update(f"{rel}\0{st.st_size}\0".encode())
        with open(f, "rb") as fh:
            if st.st_size <= _FULL_HASH_LIMIT:
                h.update(hashlib.sha256(fh.read()).digest())
            else:
                h.update(str(st.st_mtime_ns).encode())
                h.update(fh.read(_EDGE_BYTES))
                fh.seek(st.st_size - _EDGE_BYTES)
                h.update(fh.read(_EDGE_BYTES))
    return h.hexdigest()[:32]


def set_torch_threads(n_threads: int | None) -> None:
    """Cap torch's intra-op threads (None keeps torch's default). Shared machines need this."""
    if n_threads is None:
        return
    import torch

    if n_threads < 1:
        raise InputError(f"threads must be >= 1, got {n_threads}")
    torch.set_num_threads(n_threads)
