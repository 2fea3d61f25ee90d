"""Per-modality normalisation of embeddings, learned on the training rows.

Modes (`NORMALIZATIONS`), applied before quantizing *and* before the joint concatenation:

- ``"l2"`` (default): each vector divided by its L2 norm (block norm 1);
- ``"standard"``: per dimension ``(x - mean) / std``, then divided by ``sqrt(dim)`` so that the
  block's expected squared norm is 1 too, whatever its dimension;
- ``"none"``: used as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("l2", "standard", "none")
_EPS = 1e-12


@dataclass
class Normalizer:
    """Per-modality normalisation learned on training rows.

    mean / scale: float32 [dim] for "standard" (empty otherwise); block_mean: float32 [dim], the
    mean of the normalised training rows (what a missing block is imputed with).
    """

    mode: str
    mean: np.ndarray
    scale: np.ndarray
    block_mean: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, mode: str) -> Normalizer:
        empty = np.zeros(0, dtype=np.float32)
        norm = cls(mode, empty, empty, empty)
        if mode == "standard":
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            std[std < _EPS] = 1.0  # constant dimensions are centred, not blown up
            norm.mean = mean.astype(np.float32)
            norm.scale = (std * np.sqrt(X.shape[1])).astype(np.float32)
        norm.block_mean = norm.apply(X).mean(axis=0, dtype=np.float64).astype(np.float32)
        return norm

    def apply(self, X: np.ndarray) -> np.ndarray:
        """float32 [n, dim] -> normalised float32 [n, dim] (a new array)."""
        if self.mode == "l2":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            return (X / np.maximum(norms, _EPS)).astype(np.float32, copy=False)
        if self.mode == "standard":
            return ((X - self.mean) / self.scale).astype(np.float32, copy=False)
        return np.array(X, dtype=np.float32, copy=True)
