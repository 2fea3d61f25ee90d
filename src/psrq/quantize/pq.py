"""PQ: product quantization, one k-means codebook per sub-vector (the paper's "PQ" baseline).

The d columns are split into `n_levels` contiguous sub-vectors with `np.array_split` boundaries:
when d is not a multiple of n_levels, the first d % n_levels sub-vectors get one extra column
(d=10, 4 sub-vectors -> widths 3, 3, 2, 2). Level j's code is the nearest centroid of sub-vector j.

Partial reconstruction (`inverse_transform(codes, n_levels=l)`) fills the first l sub-vectors
from their codebooks and the remaining ones with the training mean (the mean of the fit sample),
so the error curve over l is comparable with residual quantizers' coarse-to-fine curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from psrq.errors import ArtifactError, InputError
from psrq.quantize.base import BaseQuantizer, resolve_codebook_sizes
from psrq.quantize.inputs import EmbeddingSource, OnInvalid
from psrq.quantize.kmeans import (
    DEFAULT_NITER,
    DEFAULT_POINTS_PER_CENTROID,
    check_kmeans_params,
    nearest_centroid,
    train_kmeans,
    training_sample,
)
from psrq.quantize.registry import DEFAULT_CODEBOOK_SIZE
from psrq.quantize.rq_kmeans import (
    check_on_invalid,
    codebooks_from_state,
    codebooks_state,
    warn_dropped,
)


def subvector_bounds(dim: int, n_subvectors: int) -> np.ndarray:
    """Column offsets int64 [n_subvectors + 1] of np.array_split(range(dim), n_subvectors)."""
    if dim < n_subvectors:
        raise InputError(
            f"PQ: cannot split {dim} columns into {n_subvectors} sub-vectors; use n_levels <= {dim}"
        )
    widths = [len(part) for part in np.array_split(np.arange(dim), n_subvectors)]
    return np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)


class PQ(BaseQuantizer):
    """Product quantizer: codes int32 [n, n_levels], one code per sub-vector.

    Parameters (keyword-only):
        n_levels: number of sub-vectors (each sub-vector is one code level). Default 4.
        codebook_size: codes per sub-vector; an int, or a list with one size per sub-vector.
        seed: seeds the training sample (seed) and sub-vector j's k-means (seed + j).
        niter, max_points_per_centroid, on_invalid: as for RQKMeans.

    Example::

        q = PQ(n_levels=4, codebook_size=256, seed=0).fit(X)   # X float [n, d], d >= 4
        codes = q.transform(X)                                   # int32 [n, 4]
        X_hat = q.inverse_transform(codes, n_levels=2)           # first 2 sub-vectors + mean
    """

    kind = "PQ"

    def __init__(
        self,
        *,
        n_levels: int = 4,
        codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE,
        seed: int = 0,
        niter: int = DEFAULT_NITER,
        max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.seed = seed
        self.niter = niter
        self.max_points_per_centroid = max_points_per_centroid
        self.on_invalid = on_invalid

    def _check_params(self) -> list[int]:
        check_kmeans_params(
            seed=self.seed,
            niter=self.niter,
            max_points_per_centroid=self.max_points_per_centroid,
            owner="PQ",
        )
        check_on_invalid(self.on_invalid, "PQ")
        return resolve_codebook_sizes(self.codebook_size, int(self.n_levels))

    def _fit(self, source: EmbeddingSource) -> None:
        sizes = self._check_params()
        bounds = subvector_bounds(source.dim, len(sizes))
        warn_dropped(source, "PQ")
        sample = training_sample(
            source,
            max(sizes),
            seed=int(self.seed),
            max_points_per_centroid=int(self.max_points_per_centroid),
        )
        codebooks = []
        for j, k in enumerate(
            tqdm(sizes, desc="PQ fit", unit="sub-vector", disable=None, leave=False)
        ):
            lo, hi = bounds[j], bounds[j + 1]
            codebooks.append(
                train_kmeans(
                    sample[:, lo:hi],
                    k,
                    seed=int(self.seed) + j,
                    niter=int(self.niter),
                    max_points_per_centroid=int(self.max_points_per_centroid),
                    name=f"{source.name} (sub-vector {j}, columns {lo}:{hi})",
                )
            )
        self.codebooks_ = codebooks
        self.bounds_ = bounds
        self.mean_ = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.codebook_sizes_ = sizes

    def _encode(self, batch: np.ndarray) -> np.ndarray:
        codes = np.empty((batch.shape[0], len(self.codebooks_)), dtype=np.int32)
        for j, codebook in enumerate(self.codebooks_):
            labels, _ = nearest_centroid(
                batch[:, self.bounds_[j] : self.bounds_[j + 1]], codebook, distances=False
            )
            codes[:, j] = labels
        return codes

    def _decode(self, codes: np.ndarray, n_levels: int) -> np.ndarray:
        out = np.tile(self.mean_, (codes.shape[0], 1))
        for j in range(n_levels):
            out[:, self.bounds_[j] : self.bounds_[j + 1]] = self.codebooks_[j][codes[:, j]]
        return out

    def _state(self) -> dict[str, Any]:
        return {**codebooks_state(self.codebooks_), "bounds": self.bounds_, "mean": self.mean_}

    def _set_state(self, state: dict[str, Any]) -> None:
        n_sub = len(self.codebook_sizes_)
        try:
            bounds = subvector_bounds(self.dim_, n_sub)
        except InputError as e:
            raise ArtifactError(f"PQ state is inconsistent: {e}") from None
        stored = np.asarray(state.get("bounds", []))
        if stored.shape != bounds.shape or (stored != bounds).any():
            raise ArtifactError(
                f"PQ state has sub-vector bounds {stored.tolist()}, expected {bounds.tolist()}"
            )
        mean = np.asarray(state.get("mean", []))
        if mean.shape != (self.dim_,):
            raise ArtifactError(f"PQ state mean has shape {mean.shape}, expected ({self.dim_},)")
        widths = np.diff(bounds).tolist()
        self.codebooks_ = codebooks_from_state(state, self.codebook_sizes_, widths, "PQ")
        self.bounds_ = bounds
        self.mean_ = mean.astype(np.float32)
