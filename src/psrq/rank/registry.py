"""The one list of rankers: `psrq run`'s ranker names, `psrq experiment`'s rows, and the variants
beyond the paper ("+dot", "+content"), each defined once (psrq.config validates against them).

Imports nothing heavy, so the command line can offer these names without loading pydantic or torch.
"""

from __future__ import annotations

from typing import Any

# Beyond the paper (docs/ranking.md): the SID models with a VBPR-style dot-product head beside
# the attention tower ("+dot"), with the projected content as an extra item feature
# ("+content"), or both. Reported beside the paper's rows, never instead of them.
VARIANTS: dict[str, dict[str, Any]] = {
    "+dot": {"dot": True},
    "+content": {"content": True},
    "+content+dot": {"content": True, "dot": True},
}

# `psrq run` ranker names -> (psrq.rank model name, extra params, needs SIDs, needs content).
# DIN with SIDs gets `sid_codebook` = the first modality at run time (psrq.config.ranker_params),
# as the paper's "DIN + quantizer" rows use text SIDs.
RANKERS: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "mcca": ("MCCA", {}, True, False),
    **{f"mcca{s}": ("MCCA", p, True, "content" in p) for s, p in VARIANTS.items()},
    "din": ("DIN", {}, False, False),
    "din_sid": ("DIN", {}, True, False),
    **{f"din_sid{s}": ("DIN", p, True, "content" in p) for s, p in VARIANTS.items()},
    "vbpr": ("VBPR", {}, False, True),
    "content": ("ContentConcat", {}, False, True),
    "simtier_make": ("SimTierMAKE", {}, False, True),
    "qarm": ("QARM", {}, False, True),
}

# `psrq experiment` rows (the paper's tables 2-4), then the variants beyond the paper.
PAPER_MODELS = [
    "VBPR",
    "SimTier+MAKE",
    "ContentConcat",
    "DIN",
    "QARM",
    "DIN+SID",
    "MCCA",
    "MCCA w/o MSC",
    "MCCA w/o MJC",
]
VARIANT_MODELS = [f"{base}{suffix}" for base in ("DIN+SID", "MCCA") for suffix in VARIANTS]
ALL_MODELS = PAPER_MODELS + VARIANT_MODELS
# Experiment row name -> registered model name, where they differ.
MODEL_OF_RUN = {"SimTier+MAKE": "SimTierMAKE"}
