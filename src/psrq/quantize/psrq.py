"""PSRQ: Progressive Semantic Residual Quantization (Wang et al., CIKM 2025, "Stage 1").

    layer 1:      C_1 = KMeans(X)                               [k_1, d]
    layer l >= 2: Z_l = [ X_l || w * (X - X_l) ]                [n, 2d]   residual || prefix
                  C_l = KMeans(Z_l)                             [k_l, 2d]
                  id_l = argmin_c ||Z_l - C_l[c]||                         (concatenated space)
                  X_{l+1} = X_l - C_l[id_l, :d]                            (residual half only)
    reconstruction with l levels = sum_{j <= l} C_j[id_j, :d]

X - X_l (the "prefix") is the part of X the earlier levels explain: the sum of the residual halves
chosen so far. Appending it makes later levels cluster "what is left, given where the item is",
which keeps deep codes semantic (the paper's Fig. 1).

Our reading of the dimension mismatch: the paper clusters 2d-wide Z_l but never says how a
2d-wide centroid updates a d-wide residual. We assign in the concatenated space and subtract
only the centroid's residual half (its first d values); the prefix half of a centroid is used
for assignment only and never reconstructs anything.

Z_l is never materialised, neither for the items being encoded nor for the fit sample: the
prefix is a sum of earlier codewords, so its half of the distance comes from small [k_j, k_l]
tables, and its half of a k-means centroid from per-cluster counts of earlier codes
(`psrq.quantize.prefix_kmeans`, the same Lloyd iterations as faiss k-means on Z_l). Fitting
and encoding therefore cost about what RQ-KMeans costs (benchmarks/RESULTS.md).

`prefix_weight` (w above) scales the prefix half. w = 1 is the paper as written; w = 0 clusters
the residual alone, which is RQ-KMeans: the same code path runs (`psrq.quantize.rq_kmeans`), so
PSRQ(prefix_weight=0) gives exactly RQKMeans's codes for the same seed. As written (w = 1),
layer 2 largely repeats layer 1 and ID tuples collide massively (about 1% unique on Last.fm-2k).
The default is w = 0.5, chosen on ranking results (docs/results-lastfm2k.md: Last.fm-2k, k = 64,
5 seeds): it had the best validation AUC for both DIN + SIDs and MCCA (ahead of 1 and 0, within
about one std), and it keeps 37-72% of ID tuples unique instead of 1-6% (docs/quantizer-study.md).
Pass prefix_weight=1.0 for the paper-faithful setting.
"""

from __future__ import annotations

import math

from psrq.errors import InputError
from psrq.quantize.inputs import OnInvalid
from psrq.quantize.kmeans import DEFAULT_NITER, DEFAULT_POINTS_PER_CENTROID
from psrq.quantize.registry import DEFAULT_CODEBOOK_SIZE
from psrq.quantize.rq_kmeans import RQKMeans


class PSRQ(RQKMeans):
    """Progressive semantic residual quantizer (see the module docstring for the method).

    Parameters (keyword-only): those of `RQKMeans` plus
        prefix_weight: scale of the prefix half of Z_l; default 0.5 (chosen on ranking results),
            1.0 = the paper as written, 0.0 = RQ-KMeans.

    Codebooks: level 0 is [k_0, d]; levels >= 1 are [k_l, 2d] (residual half, then the prefix
    half in the scaled space) when prefix_weight > 0, [k_l, d] when it is 0.

    Example::

        q = PSRQ(n_levels=3, codebook_size=128, prefix_weight=1.0, seed=0).fit(X)
        codes = q.transform(X)                      # int32 [n, 3]
        X_hat = q.inverse_transform(codes)          # float32 [n, d]
    """

    kind = "PSRQ"

    def __init__(
        self,
        *,
        n_levels: int = 3,
        codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE,
        prefix_weight: float = 0.5,
        seed: int = 0,
        niter: int = DEFAULT_NITER,
        max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        super().__init__(
            n_levels=n_levels,
            codebook_size=codebook_size,
            seed=seed,
            niter=niter,
            max_points_per_centroid=max_points_per_centroid,
            on_invalid=on_invalid,
        )
        self.prefix_weight = prefix_weight

    def _prefix_weight(self) -> float:
        return float(self.prefix_weight)

    def _check_params(self) -> list[int]:
        w = self.prefix_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InputError(f"PSRQ: prefix_weight must be a finite number >= 0, got {w!r}")
        return super()._check_params()
