"""psrq.serve: scoring with a trained ranker, the HTTP service, the explorer and model export.

from psrq.serve import Ranker            # imported lazily (torch)
"""

from __future__ import annotations

from psrq._lazy import lazy_exports

_EXPORTS = {"Ranker": "psrq.serve.ranker"}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
