"""Quantizers that turn item embeddings into semantic IDs (all share `BaseQuantizer`'s API)."""

from __future__ import annotations

from typing import Any

_CLASSES = {
    "VQ": "psrq.quantize.vq",
    "PQ": "psrq.quantize.pq",
    "RQKMeans": "psrq.quantize.rq_kmeans",
    "PSRQ": "psrq.quantize.psrq",
    "RQVAE": "psrq.quantize.rqvae",
}


class _Registry(dict):
    """kind -> class, importing each module on first use (RQVAE pulls in torch)."""

    def __missing__(self, kind: str) -> Any:
        if kind not in _CLASSES:
            raise KeyError(kind)
        import importlib

        cls = getattr(importlib.import_module(_CLASSES[kind]), kind)
        self[kind] = cls
        return cls

    def __iter__(self):  # type: ignore[override]
        return iter(_CLASSES)

    def __contains__(self, kind: object) -> bool:
        return kind in _CLASSES


QUANTIZERS: dict[str, Any] = _Registry()
