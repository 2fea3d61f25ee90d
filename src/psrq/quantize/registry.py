"""The one list of quantizers: kind (the name in manifests and YAML), module, label, aliases.

Everything that names quantizers (the lazy `psrq.PSRQ` exports, `BaseQuantizer.load`, the
multimodal `method` option, the CLI, the run config, the experiment tables) reads it from here.
This module imports no quantizer at import time, so `base.py` and `quantize/__init__.py` can both
use it without importing each other; each class is imported on first use (RQVAE pulls in torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from psrq.errors import ArtifactError, ConfigError

# kind -> (module, label in result tables, lower-case aliases accepted as a `method`).
# Order: the paper's quantizer table (baselines first, PSRQ last).
_ENTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "VQ": ("psrq.quantize.vq", "VQ", ("vq",)),
    "PQ": ("psrq.quantize.pq", "PQ", ("pq",)),
    "RQKMeans": ("psrq.quantize.rq_kmeans", "RQ", ("rqkmeans", "rq-kmeans", "rq_kmeans")),
    "RQVAE": ("psrq.quantize.rqvae", "RQ-VAE", ("rqvae", "rq-vae")),
    "PSRQ": ("psrq.quantize.psrq", "PSRQ", ("psrq",)),
}

# The library default of every residual quantizer and of the configurations (psrq.config): 3 levels
# of k = 64, the setting our Last.fm-2k ranking results were measured with
# (docs/results-lastfm2k.md); the paper uses 64 / 128 / 256 for catalogues of 34k / 100k / 1.4M.
DEFAULT_N_LEVELS = 3
DEFAULT_CODEBOOK_SIZE = 64

KINDS: tuple[str, ...] = tuple(_ENTRIES)
MODULES: dict[str, str] = {kind: entry[0] for kind, entry in _ENTRIES.items()}
LABELS: dict[str, str] = {kind: entry[1] for kind, entry in _ENTRIES.items()}
METHOD_ALIASES: dict[str, str] = {
    alias: kind for kind, entry in _ENTRIES.items() for alias in entry[2]
}
# What help texts and error messages offer as `--method` values.
METHOD_NAMES: tuple[str, ...] = tuple(entry[2][0] for entry in _ENTRIES.values())


def resolve_method(name: str) -> str:
    """Quantizer kind for a method name, case-insensitively ('psrq' -> 'PSRQ')."""
    kind = METHOD_ALIASES.get(str(name).lower())
    if kind is None:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    return kind


class _Registry(dict):
    """kind -> class, importing each module on first use."""

    def __missing__(self, kind: str) -> Any:
        if kind not in MODULES:
            raise KeyError(kind)
        cls = getattr(importlib.import_module(MODULES[kind]), kind)
        self[kind] = cls
        return cls

    def __iter__(self):  # type: ignore[override]
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)

    def __contains__(self, kind: object) -> bool:
        return kind in MODULES


QUANTIZERS: dict[str, Any] = _Registry()


def quantizer_class(kind: str) -> Any:
    """Look a quantizer class up by its `kind` (the name written in manifests)."""
    try:
        return QUANTIZERS[kind]
    except KeyError:
        raise ArtifactError(f"unknown quantizer kind {kind!r}; known: {sorted(KINDS)}") from None
