"""The ranker's model directory: the format training writes and serving reads.

    save_model("runs/mcca/model", result)        # weights.pt, items.json, spec.json, manifest
    root = resolve_model_dir("runs/mcca")        # a model dir, or a training output holding model/

Lives in the ranking stage (not in psrq.serve) because training writes it: psrq.rank.train and
psrq.rank.ddp import it, psrq.serve.ranker reads it, and it imports neither of them (TrainResult
is a type-only import), so no stage imports "upward".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from psrq.artifacts import read_model_dir, write_model_dir
from psrq.errors import ArtifactError
from psrq.rank.batches import ItemTables
from psrq.rank.models import RankingModel, TableShapes, build_model

if TYPE_CHECKING:
    from psrq.rank.train import TrainResult

MODEL_KIND = "psrq-ranker"


def load_tensors(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never code.
    Anything else (a pickled object, a corrupted file) is an ArtifactError naming the file."""
    import pickle

    try:
        return torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise ArtifactError(
            f"{path} cannot be loaded safely (weights_only): {str(e).splitlines()[0]}"
        ) from None


def save_model(path: str | os.PathLike[str], result: TrainResult) -> Path:
    """Write a model directory: weights.pt, items.json (item rows), spec.json, manifest."""
    spec = {
        "model": result.config.model,
        "model_kwargs": result.model.model_kwargs(),
        "description": result.model.describe(),
        "shapes": result.tables.shapes().to_dict(),
        "train_config": result.config.to_dict(),
        "sid_fingerprint": model_sid_fingerprint(result.model, result.tables),
        "sid_source": result.tables.sid_source if result.model.codebooks else {},
        "best_epoch": result.best_epoch,
    }
    with write_model_dir(
        path,
        kind=MODEL_KIND,
        params=result.config.to_dict(),
        seed=result.config.seed,
        input_fingerprint=spec["sid_fingerprint"],
        extra={"model": result.config.model, "metrics": result.metrics},
    ) as d:
        torch.save(result.model.state_dict(), d / "weights.pt")
        (d / "items.json").write_text(json.dumps(result.tables.item_ids.astype(str).tolist()))
        (d / "spec.json").write_text(json.dumps(spec, indent=2))
    return Path(path)


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """Accept a model directory or a training output directory holding `model/`."""
    p = Path(path)
    if (p / "model" / "manifest.json").is_file() and not (p / "manifest.json").is_file():
        return p / "model"
    return p


def load_model(
    path: str | os.PathLike[str],
) -> tuple[RankingModel, ItemTables, dict[str, Any], Path]:
    """Read a model directory (manifest + checksums): (model, its item tables, spec, directory).

    `path` may be a training output holding `model/` (see resolve_model_dir). An ArtifactError
    when the weights do not fit spec.json or the tables do not match the recorded SID fingerprint.
    """
    root = resolve_model_dir(path)
    read_model_dir(root, kind=MODEL_KIND)
    spec = json.loads((root / "spec.json").read_text())
    shapes = TableShapes.from_dict(spec["shapes"])
    model = build_model(spec["model"], shapes, **spec["model_kwargs"])
    try:
        model.load_state_dict(load_tensors(root / "weights.pt"))
    except (RuntimeError, KeyError) as e:
        raise ArtifactError(f"{root}: weights.pt does not fit the model in spec.json: {e}") from e
    item_ids = np.asarray(json.loads((root / "items.json").read_text()), dtype=object)
    tables = ItemTables(
        item_ids=item_ids,
        item_to_id=model.item_to_id.numpy().copy(),
        n_ids=shapes.n_ids,
        sids={cb: getattr(model, f"sids_{cb}").numpy().copy() for cb in model.codebooks},
        sid_sizes={cb: shapes.sid_sizes[cb] for cb in model.codebooks},
        content={
            m: getattr(model, f"content_{m}").numpy().copy() for m in model.content_modalities
        },
    )
    if tables.sid_fingerprint() != spec.get("sid_fingerprint"):
        raise ArtifactError(f"{root}: item tables do not match the recorded SID fingerprint")
    tables.sid_source = dict(spec.get("sid_source") or {})
    return model, tables, spec, root


def model_sid_fingerprint(model: RankingModel, tables: ItemTables) -> str:
    """Fingerprint of the (item, SID) pairs of the codebooks this model actually uses."""
    used = ItemTables(
        item_ids=tables.item_ids,
        item_to_id=tables.item_to_id,
        n_ids=tables.n_ids,
        sids={cb: tables.sids[cb] for cb in model.codebooks},
        sid_sizes={cb: tables.sid_sizes[cb] for cb in model.codebooks},
    )
    return used.sid_fingerprint()
