"""VQ: one k-means codebook (a single-level quantizer, the paper's "VQ" baseline).

It is RQ-KMeans with one level, and shares its code (fit on one seeded sample of
codebook_size * max_points_per_centroid rows, assign in chunks).
"""

from __future__ import annotations

from psrq.quantize.inputs import OnInvalid
from psrq.quantize.kmeans import DEFAULT_NITER, DEFAULT_POINTS_PER_CENTROID
from psrq.quantize.registry import DEFAULT_CODEBOOK_SIZE
from psrq.quantize.rq_kmeans import RQKMeans


class VQ(RQKMeans):
    """One k-means layer: codes int32 [n, 1].

    Parameters (keyword-only): codebook_size (int, or a one-element list), seed (k-means and
    sample seed), niter, max_points_per_centroid, on_invalid ("raise" | "drop").

    Example::

        q = VQ(codebook_size=128, seed=0).fit(X)     # X float [n, d]
        codes = q.transform(X)                        # int32 [n, 1]
    """

    kind = "VQ"

    def __init__(
        self,
        *,
        codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE,
        seed: int = 0,
        niter: int = DEFAULT_NITER,
        max_points_per_centroid: int = DEFAULT_POINTS_PER_CENTROID,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        super().__init__(
            n_levels=1,
            codebook_size=codebook_size,
            seed=seed,
            niter=niter,
            max_points_per_centroid=max_points_per_centroid,
            on_invalid=on_invalid,
        )

    def _level_count(self) -> int:
        return 1
