"""Quantizers that turn item embeddings into semantic IDs (all share `BaseQuantizer`'s API).

The list of quantizers and their aliases lives in `psrq.quantize.registry`.
"""

from __future__ import annotations

from psrq.quantize.registry import QUANTIZERS

__all__ = ["QUANTIZERS"]
