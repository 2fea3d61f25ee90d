"""Ranking stage: MCCA and baselines (models), batches, training, metrics, experiments.

Public names are imported lazily so `psrq --help` does not load torch:

    from psrq.rank import MCCA, DIN, TrainConfig, load_ranking_data, train_model, save_model

Scoring with a trained model is psrq.serve (`from psrq.serve import Ranker`).
"""

from __future__ import annotations

from psrq._lazy import lazy_exports

_EXPORTS = {
    "MCCA": "psrq.rank.models",
    "DIN": "psrq.rank.models",
    "VBPR": "psrq.rank.models",
    "ContentConcat": "psrq.rank.models",
    "MODELS": "psrq.rank.models",
    "registered_models": "psrq.rank.models",
    "SimTierMAKE": "psrq.rank.simtier",
    "QARM": "psrq.rank.qarm",
    "TableShapes": "psrq.rank.models",
    "build_model": "psrq.rank.models",
    "ItemTables": "psrq.rank.batches",
    "EncodedSplit": "psrq.rank.batches",
    "TrainConfig": "psrq.rank.train",
    "PRESETS": "psrq.rank.train",
    "RankingData": "psrq.rank.train",
    "save_model": "psrq.rank.model_dir",
    "load_model": "psrq.rank.model_dir",
    "resolve_model_dir": "psrq.rank.model_dir",
    "load_ranking_data": "psrq.rank.train",
    "train_model": "psrq.rank.train",
    "evaluate_split": "psrq.rank.train",
    "evaluate_predictions": "psrq.rank.metrics",
    "auc": "psrq.rank.metrics",
    "gauc": "psrq.rank.metrics",
    "logloss": "psrq.rank.metrics",
    "ExperimentConfig": "psrq.config",
    "run_experiment": "psrq.rank.experiment",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
