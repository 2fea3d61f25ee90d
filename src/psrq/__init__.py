"""psrq: multimodal semantic IDs (PSRQ) and multi-codebook cross-attention ranking (MCCA).

from psrq import PSRQ
codes = PSRQ(n_levels=3, codebook_size=128, seed=0).fit_transform(X)
"""

from __future__ import annotations

import os

from psrq._lazy import lazy_exports
from psrq.quantize.registry import MODULES as _QUANTIZER_MODULES

# faiss, torch and scikit-learn can end up sharing one OpenMP runtime whose default busy-waiting
# makes small k-means fits many times slower on a loaded machine; waiting passively costs nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


# Quantizers are imported lazily so `import psrq` (and `psrq --help`) stays fast and torch-free.
_LAZY = {**_QUANTIZER_MODULES, "MultimodalQuantizer": "psrq.quantize.multimodal"}

__all__ = ["__version__", *_LAZY]

__getattr__ = lazy_exports(__name__, _LAZY)
