"""Training, evaluation and checkpoints for the ranking models.

    data = load_ranking_data("data/lastfm2k/samples", sids="sids.parquet", embeddings="embeddings")
    result = train_model(data, TrainConfig(model="MCCA", seed=0), out="runs/mcca")
    print(result.metrics["test"])            # {"auc": ..., "cold_auc": ..., "logloss": ..., "gauc": ...}

The model directory `out/model` is written by psrq.rank.model_dir.save_model; scoring with the
frozen model is psrq.serve.ranker.Ranker.

Training: Adam on binary cross-entropy, shuffled batches from a seeded torch.Generator (one per
epoch, so resuming at an epoch boundary reproduces the same order), validation AUC after every
epoch, early stopping with `patience`, and the best epoch's weights restored at the end.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psrq.artifacts import fingerprint_obj, read_model_dir, write_json, write_model_dir

# The training configuration is part of the one configuration tree (psrq.config), re-exported here.
from psrq.config import FAMILY_DEFAULTS, PRESETS, TrainConfig, model_family  # noqa: F401
from psrq.errors import ConfigError, InputError, TrainingError
from psrq.formats.ids import read_parquet as read_table
from psrq.formats.sids import JOINT, read_sids_source
from psrq.rank.batches import (
    EncodedSplit,
    ItemTables,
    build_item_tables,
    encode_samples,
    iter_batches,
    read_embeddings_dir,
    read_sids,
)
from psrq.rank.metrics import evaluate_predictions
from psrq.rank.model_dir import load_tensors, save_model
from psrq.rank.models import RankingModel, build_model

CHECKPOINT_KIND = "psrq-ranker-checkpoint"


PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device_type: str) -> None:
    """Refuse a precision the device cannot train in (fp16 needs CUDA's GradScaler)."""
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(
            f"precision fp16 trains on CUDA only (float16 needs a GradScaler there), not on {device_type}; "
            "use bf16 or fp32"
        )


def autocast(precision: str, device_type: str) -> Any:
    """The forward pass's context for `precision`: nothing for fp32, torch.autocast otherwise."""
    import contextlib

    check_precision(precision, device_type)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type, dtype=dtype)


# ---- data -------------------------------------------------------------------------------------
@dataclass
class RankingData:
    tables: ItemTables
    splits: dict[str, EncodedSplit]
    source: dict[str, Any]  # paths, for the record


def load_ranking_data(
    samples_dir: str | os.PathLike[str],
    *,
    sids: str | os.PathLike[str] | None = None,
    embeddings: str | os.PathLike[str] | None = None,
    modalities: list[str] | None = None,
    max_history: int = 20,
    min_id_count: int = 2,
    splits: tuple[str, ...] = ("train", "valid", "test"),
) -> RankingData:
    """Read samples/{train,valid,test}.parquet (+ sids.parquet, + embeddings/<modality>.parquet)."""
    d = Path(samples_dir)
    if not d.is_dir():
        raise InputError(f"samples directory not found: {d}")
    train_table = read_table(d / "train.parquet")
    sid_data = with_single_modality_joint(read_sids(sids)) if sids is not None else None
    content = read_embeddings_dir(embeddings, modalities)
    tables = build_item_tables(
        train_table, sids=sid_data, content=content, min_id_count=min_id_count
    )
    tables.sid_source = read_sids_source(sids) if sids is not None else {}
    encoded = {}
    for name in splits:
        table = train_table if name == "train" else read_table(d / f"{name}.parquet")
        encoded[name] = encode_samples(
            table, tables, max_history=max_history, name=name, source=d / f"{name}.parquet"
        )
    return RankingData(
        tables,
        encoded,
        {
            "samples": str(d),
            "sids": str(sids) if sids else None,
            "embeddings": str(embeddings) if embeddings else None,
        },
    )


def with_single_modality_joint(
    sid_data: tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[int]]],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[int]]]:
    """With one modality, the modal-joint input [X^t] is X^t itself, so the joint SID *is* the
    modality's SID: alias it (the same array, no copy). The item tables then report
    ``sid_aliases == {"joint": <modality>}`` and the models build that codebook once."""
    ids, codes, sizes = sid_data
    mods = [cb for cb in codes if cb != JOINT]
    if JOINT not in codes and len(mods) == 1:
        codes = {**codes, JOINT: codes[mods[0]]}
        sizes = {**sizes, JOINT: sizes[mods[0]]}
    return ids, codes, sizes


# ---- model construction -----------------------------------------------------------------------
def make_model(config: TrainConfig, tables: ItemTables) -> RankingModel:
    """Build the configured model (seeded) and copy the item tables into its buffers."""
    torch.manual_seed(config.seed)
    model = build_model(
        config.model, tables.shapes(), dim=config.dim, dropout=config.dropout, **config.model_params
    )
    load_item_tables(model, tables)
    return model


def load_item_tables(model: RankingModel, tables: ItemTables) -> None:
    """Replace the model's item-table buffers (e.g. after adding new items for scoring)."""
    model.item_to_id = torch.from_numpy(tables.item_to_id.astype(np.int64))
    for cb in model.codebooks:
        setattr(model, f"sids_{cb}", torch.from_numpy(tables.sids[cb].astype(np.int64)))
    for m in model.content_modalities:
        setattr(model, f"content_{m}", torch.from_numpy(tables.content[m].astype(np.float32)))
    model.item_tables_changed()


# ---- training ---------------------------------------------------------------------------------
class AdamWithSparseEmbeddings:
    """Adam for dense parameters + SparseAdam ("lazy Adam") for sparse embedding tables.

    SparseAdam updates the moments of the rows present in the batch only, as TF's LazyAdam does
    in most recommender code; weight decay applies to dense parameters only.
    """

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> None:
        sparse = [
            m.weight
            for m in model.modules()
            if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag) and m.sparse
        ]
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in model.parameters() if id(p) not in sparse_ids]
        self.optimizers: list[torch.optim.Optimizer] = []
        if dense:
            self.optimizers.append(torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay))
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for opt, st in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(st)


def make_optimizer(model: RankingModel, config: TrainConfig) -> AdamWithSparseEmbeddings:
    return AdamWithSparseEmbeddings(model, config.lr, config.weight_decay)


class EmbeddingL2:
    """L2 on the embedding rows a training batch looks up:  weight * sum ||w_r||^2 / B  over the
    *distinct* rows r of every embedding table used by the batch (padding rows excluded).

    Why this and not weight decay: SparseAdam has no weight decay, and decaying every row on
    every step would make each step dense again (the cost sparse updates exist to avoid). A
    penalty on the looked-up rows has a gradient on those rows only, so it stays sparse, and it
    is DIN's "mini-batch aware" regularisation without the frequency weighting: a row is pulled
    towards 0 in each batch that uses it, never for batches that do not. Rows are collected by
    forward pre-hooks while the model is in training mode, so the forward signature is unchanged
    and evaluation records nothing.
    """

    def __init__(self, model: torch.nn.Module, weight: float) -> None:
        self.weight = float(weight)
        self._seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
        self._handles = []
        if self.weight > 0:
            for m in model.modules():
                if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag):
                    self._handles.append(m.register_forward_pre_hook(self._record))

    def _record(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if module.training:
            self._seen.append((module, args[0]))

    def penalty(self, batch_size: int) -> torch.Tensor:
        """The penalty of the rows recorded since the last call (then forgets them); scalar."""
        by_table: dict[int, tuple[torch.nn.Module, list[torch.Tensor]]] = {}
        for module, idx in self._seen:
            by_table.setdefault(id(module), (module, []))[1].append(idx.reshape(-1))
        self._seen.clear()
        total = torch.zeros(())
        for module, parts in by_table.values():
            rows = torch.unique(torch.cat(parts))
            if module.padding_idx is not None:
                rows = rows[rows != module.padding_idx]
            # F.embedding with the table's own sparsity keeps the gradient sparse for SparseAdam.
            w = torch.nn.functional.embedding(rows, module.weight, sparse=bool(module.sparse))
            total = total + (w * w).sum()
        return self.weight * total / max(int(batch_size), 1)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class TrainResult:
    model: RankingModel
    tables: ItemTables
    config: TrainConfig
    best_epoch: int
    history: list[dict[str, Any]]  # per epoch: train loss, valid metrics
    metrics: dict[str, dict[str, float]]  # split -> metrics of the restored best model


def predict_logits(
    model: RankingModel,
    split: EncodedSplit,
    batch_size: int = 8192,
    device: torch.device | None = None,
) -> np.ndarray:
    """Logits float32 [n] for every sample of a split, in order (`device`: the model's, None = CPU)."""
    model.eval()
    out = np.empty(len(split), dtype=np.float32)
    with torch.no_grad():
        for _, idx, target, history, _ in iter_batches(split, batch_size):
            if device is not None:
                target, history = target.to(device), history.to(device)
            out[idx.numpy()] = model(target, history).float().cpu().numpy()
    return out


def evaluate_split(
    model: RankingModel,
    split: EncodedSplit,
    batch_size: int = 8192,
    device: torch.device | None = None,
) -> dict[str, float]:
    logits = predict_logits(model, split, batch_size, device)
    return evaluate_predictions(split.label.numpy(), logits, split.user, split.is_cold)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def train_one_epoch(
    model: RankingModel,
    optimizer: AdamWithSparseEmbeddings,
    split: EncodedSplit,
    config: TrainConfig,
    epoch: int,
    *,
    progress: bool = True,
) -> float:
    """One pass over `split` in seeded random order; returns the mean training loss.

    A non-finite loss stops training with TrainingError naming the epoch, batch and samples.
    """
    from tqdm.auto import tqdm

    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    regulariser = EmbeddingL2(model, config.embedding_l2 or 0.0)
    total, count = 0.0, 0
    n_batches = math.ceil(len(split) / config.batch_size)
    batches = iter_batches(split, config.batch_size, generator=_epoch_generator(config.seed, epoch))
    try:
        for b, idx, target, history, label in tqdm(
            batches,
            total=n_batches,
            desc=f"epoch {epoch + 1}",
            leave=False,
            disable=None if progress else True,
        ):
            with autocast(config.precision, "cpu"):
                logits = model(target, history)
            loss = loss_fn(logits.float(), label)  # the loss in float32 at every precision
            if not torch.isfinite(loss):
                rows = idx[:5].tolist()
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {b} of {n_batches} "
                    f"(sample rows {rows}{'...' if len(idx) > 5 else ''} of split {split.name!r}); training stopped. "
                    "Check the inputs of those samples or lower the learning rate."
                )
            optimizer.zero_grad(set_to_none=True)
            # The reported training loss stays plain BCE (comparable across settings).
            (loss + regulariser.penalty(len(idx)) if regulariser.weight > 0 else loss).backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
    finally:
        regulariser.close()
    return total / max(count, 1)


def prepare_model(
    model: RankingModel,
    train: EncodedSplit,
    config: TrainConfig,
    *,
    resuming: bool,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """What a model does before the main loop (both no-ops for most models): fit item features
    on the training split (QARM's codes), then train each pre-training phase (SimTier+MAKE's
    multimodal module) on that phase's parameters only, with an optimiser of its own, and freeze
    them. When resuming, the checkpoint holds all of it: the phases' modules are only frozen.
    Returns one record per pre-training epoch."""
    from rich.console import Console

    records: list[dict[str, Any]] = []
    if not resuming:
        model.fit_item_features(train, config.seed)
    for phase in model.pretraining_phases():
        if not resuming:
            optimizer = AdamWithSparseEmbeddings(phase.module, config.lr, config.weight_decay)
            with model.active_phase(phase.name):
                for epoch in range(phase.epochs):
                    loss = train_one_epoch(
                        model, optimizer, train, config, epoch, progress=progress
                    )
                    records.append({"phase": phase.name, "epoch": epoch + 1, "train_loss": loss})
                    Console(stderr=True, quiet=not progress).print(
                        f"{phase.name} epoch {epoch + 1}: train loss {loss:.4f}"
                    )
        phase.module.requires_grad_(False)  # the main loop's optimiser then never moves it
    return records


def train_model(
    data: RankingData,
    config: TrainConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train with early stopping on validation AUC; restore the best epoch; write `out` if given.

    With `out`, a checkpoint (`out/checkpoint`) is written atomically after every epoch and the
    final model directory is `out/model`; `resume=True` continues from the checkpoint.
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    check_precision(config.precision, "cpu")  # this loop trains on the CPU
    if "train" not in data.splits or len(data.splits["train"]) == 0:
        raise InputError("no training samples (samples/train.parquet is empty)")
    valid = data.splits.get("valid")
    model = make_model(config, data.tables)
    ckpt = Path(out) / "checkpoint" if out is not None else None
    resuming = resume and ckpt is not None and (ckpt / "manifest.json").is_file()
    prepare_model(model, data.splits["train"], config, resuming=resuming, progress=progress)
    optimizer = make_optimizer(model, config)
    state = {
        "epoch": -1,
        "best_epoch": -1,
        "best_auc": -math.inf,
        "bad_epochs": 0,
        "history": [],
        "best_state": None,
    }
    if resuming:
        state = _load_checkpoint(ckpt, model, optimizer, config, data.tables)
        console.print(f"resuming after epoch {state['epoch'] + 1} from {ckpt}")
    for epoch in range(state["epoch"] + 1, config.epochs):
        loss = train_one_epoch(
            model, optimizer, data.splits["train"], config, epoch, progress=progress
        )
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss}
        score = -loss
        if valid is not None and len(valid):
            record["valid"] = evaluate_split(model, valid, config.eval_batch_size)
            score = record["valid"]["auc"] if not math.isnan(record["valid"]["auc"]) else -loss
        state["history"].append(record)
        if score > state["best_auc"]:
            state.update(
                best_auc=score,
                best_epoch=epoch,
                bad_epochs=0,
                best_state=copy.deepcopy(model.state_dict()),
            )
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        v = record.get("valid", {})
        console.print(
            f"epoch {epoch + 1}: train loss {loss:.4f}  valid AUC {v.get('auc', math.nan):.4f}  GAUC {v.get('gauc', math.nan):.4f}"
        )
        if ckpt is not None:
            _write_checkpoint(ckpt, model, optimizer, config, data.tables, state)
        if config.patience and state["bad_epochs"] >= config.patience:
            break
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    metrics = {
        name: evaluate_split(model, split, config.eval_batch_size)
        for name, split in data.splits.items()
        if name != "train" and len(split)
    }
    result = TrainResult(
        model, data.tables, config, state["best_epoch"] + 1, state["history"], metrics
    )
    if out is not None:
        save_model(Path(out) / "model", result)
        write_json(
            Path(out) / "metrics.json",
            {"best_epoch": result.best_epoch, "metrics": metrics, "history": result.history},
        )
    return result


def _config_key(config: TrainConfig, tables: ItemTables) -> str:
    # `epochs` may grow on resume (continue a finished run for longer); everything else must match.
    settings = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    if settings.get("precision") == "fp32":  # the default: checkpoints written before it resume
        del settings["precision"]
    return fingerprint_obj(
        {"config": settings, "sids": tables.sid_fingerprint(), "shapes": tables.shapes().to_dict()}
    )


def discard_stale_checkpoint(
    out: str | os.PathLike[str], config: TrainConfig, tables: ItemTables
) -> bool:
    """Delete `out/checkpoint` when another configuration or other data wrote it (True if so).

    For callers that own `out` and have already decided to retrain (`psrq run`, whose stage
    fingerprint changed): resuming such a checkpoint is refused, so it is only in the way.
    """
    import shutil

    ckpt = Path(out) / "checkpoint"
    if not (ckpt / "manifest.json").is_file():
        return False
    try:
        fingerprint = json.loads((ckpt / "manifest.json").read_text()).get("input_fingerprint")
    except (OSError, ValueError):
        fingerprint = None
    if fingerprint == _config_key(config, tables):
        return False
    shutil.rmtree(ckpt)
    return True


def _write_checkpoint(
    path: Path,
    model: RankingModel,
    optimizer: AdamWithSparseEmbeddings,
    config: TrainConfig,
    tables: ItemTables,
    state: dict[str, Any],
) -> None:
    with write_model_dir(
        path,
        kind=CHECKPOINT_KIND,
        params=config.to_dict(),
        seed=config.seed,
        input_fingerprint=_config_key(config, tables),
    ) as d:
        # torch's global RNG feeds dropout: saved so a resumed run draws the same masks.
        blob = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": state,
            "rng": torch.get_rng_state(),
        }
        torch.save(blob, d / "checkpoint.pt")


def _load_checkpoint(
    path: Path,
    model: RankingModel,
    optimizer: AdamWithSparseEmbeddings,
    config: TrainConfig,
    tables: ItemTables,
) -> dict[str, Any]:
    manifest = read_model_dir(path, kind=CHECKPOINT_KIND)
    if manifest.get("input_fingerprint") != _config_key(config, tables):
        raise ConfigError(
            f"{path} was written by a run with another configuration or other data; resume needs the same ones (or delete the checkpoint)"
        )
    blob = load_tensors(path / "checkpoint.pt")
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if "rng" in blob:
        torch.set_rng_state(blob["rng"])
    return blob["state"]
