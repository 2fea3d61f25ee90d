"""`psrq run`: every ranking row is the model its name says (SYNTHETIC catalogue, small and fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _config(out: Path, **rank):
    from psrq.config import load_config

    return load_config(
        overrides={
            "out": str(out),
            "dataset": {"name": "synth", "synth_items": 400, "synth_users": 60},
            "quantize": {
                "methods": [{"name": "rq", "method": "RQKMeans", "n_levels": 2, "codebook_size": 8}]
            },
            "rank": {"models": ["din", "din_sid", "mcca+dot"], "seeds": 1, "epochs": 1, **rank},
        }
    )


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from psrq.pipeline import run_pipeline

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "synth"
    run_pipeline(_config(out))
    return out


def _spec(run: Path, name: str) -> dict:
    return json.loads((run / "rank" / name / "seed0" / "model" / "spec.json").read_text())


def _test_metrics(run: Path, name: str) -> dict:
    return json.loads((run / "rank" / name / "seed0" / "metrics.json").read_text())["metrics"][
        "test"
    ]


def test_din_sid_row_is_din_with_semantic_ids(synth_run: Path) -> None:
    din, din_sid = _spec(synth_run, "din"), _spec(synth_run, "din_sid-rq")
    assert din["model"] == din_sid["model"] == "DIN"
    assert din["model_kwargs"]["sid_codebook"] is None
    # the SYNTHETIC catalogue's first modality is audio or text: its SIDs must be in the model
    codebook = din_sid["model_kwargs"]["sid_codebook"]
    assert codebook in {"text", "audio"} and codebook in din_sid["shapes"]["sid_sizes"]
    assert din_sid["description"] == f"DIN + {codebook} SIDs"
    assert _test_metrics(synth_run, "din")["auc"] != _test_metrics(synth_run, "din_sid-rq")["auc"]


def test_variant_row_is_the_variant(synth_run: Path) -> None:
    spec = _spec(synth_run, "mcca+dot-rq")
    assert (
        spec["model"] == "MCCA"
        and spec["model_kwargs"]["dot"] is True
        and spec["model_kwargs"]["content"] is False
    )
    assert spec["description"].startswith("MCCA+dot")


def test_changed_rank_settings_retrain_over_the_old_checkpoint(synth_run: Path) -> None:
    """A rerun with other rank settings retrains (the old checkpoint cannot resume) instead of failing."""
    from psrq.pipeline import run_pipeline

    before = _spec(synth_run, "din_sid-rq")["train_config"]
    run_pipeline(_config(synth_run, models=["din_sid"], dropout=0.2, embedding_l2=0.05))
    after = _spec(synth_run, "din_sid-rq")["train_config"]
    assert (
        (after["dropout"], after["embedding_l2"])
        == (0.2, 0.05)
        != (before["dropout"], before["embedding_l2"])
    )
