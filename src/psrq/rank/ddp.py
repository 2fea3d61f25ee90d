"""Data-parallel training with torchrun: DistributedDataParallel + DistributedSampler.

    torchrun --standalone --nproc_per_node 2 -m psrq.rank.ddp --samples data/samples --sids sids.parquet --out runs/mcca
    psrq train --nproc 2 --samples data/samples --sids sids.parquet --out runs/mcca      (launches the above)

What is the same as `psrq.rank.train.train_model`: the model, its seeded initialisation, the
optimiser (Adam for dense parameters + SparseAdam for embedding tables), the loss, validation AUC
after every epoch, early stopping, best-epoch restore, the checkpoint and model-directory formats
(so `psrq evaluate` / `psrq score` / `--resume` read them unchanged).

What data parallelism changes, and why results still match one process:

- ``batch_size`` stays the *global* batch: each of the W processes takes ``batch_size / W``
  samples a step (it must divide evenly). DDP averages the gradients, and every local loss is a
  mean over an equal number of samples, so a step's gradient is the mean over the global batch.
- ``DistributedSampler(shuffle=True, seed=config.seed)`` draws one permutation per epoch
  (``set_epoch``) and gives rank r the positions r, r+W, r+2W, ...; local batch i of every rank
  together is exactly positions [i*B, (i+1)*B) of that permutation: the batches a single process
  with the same sampler sees. Differences come from float summation order only (and from the
  sampler padding the last batch with W-1 repeated samples at most).
- Embedding gradients: with gloo (CPU) the ID and SID tables keep **sparse** gradients. They
  are left out of DDP's reducer; `all_reduce_sparse_gradients` averages them after backward
  (dense all_gathers of the rows, sum / W; gloo's sparse all-reduce crashed rarely), and
  SparseAdam then updates exactly the rows the global batch touched, as in one process. NCCL
  has no sparse all-reduce, so on GPUs the tables are built **dense** (``sparse_embeddings=False``,
  dense Adam): SID tables are small (1 + sum of codebook sizes rows per codebook) and the ID table
  costs an all-reduce of n_ids x d floats per step; with the dense path Adam also decays moments
  of untouched rows, so GPU runs match CPU runs only approximately.
- Validation and test metrics are computed by rank 0 on the unwrapped model (all ranks hold the
  same weights); the early-stopping score is broadcast so every rank stops at the same epoch.
- Rank 0 alone writes the checkpoint (after every epoch) and the model directory; every rank
  reads the checkpoint on ``--resume``.
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from psrq.config import TrainingSettings, with_overrides
from psrq.errors import ConfigError, InputError, TrainingError
from psrq.rank.model_dir import save_model
from psrq.rank.train import (
    EmbeddingL2,
    RankingData,
    TrainConfig,
    TrainResult,
    _load_checkpoint,
    _write_checkpoint,
    autocast,
    check_precision,
    evaluate_split,
    load_ranking_data,
    make_model,
    make_optimizer,
)


def backend_for_device() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


class _Indices:
    """A sized stand-in dataset: DistributedSampler only needs len()."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def local_batches(
    n: int, batch_size: int, *, rank: int, world: int, seed: int, epoch: int
) -> list[torch.Tensor]:
    """This rank's sample indices for one epoch, cut into local batches of batch_size / world."""
    from torch.utils.data import DistributedSampler

    if batch_size % world:
        raise ConfigError(
            f"batch_size {batch_size} is the global batch and must be divisible by the {world} processes"
        )
    sampler = DistributedSampler(
        _Indices(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(sampler), dtype=torch.int64)
    return list(torch.split(idx, batch_size // world))


def sparse_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the embedding tables with sparse gradients (nn.Embedding(..., sparse=True))."""
    tables = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag) and m.sparse
    }
    return [name for name, p in model.named_parameters() if id(p) in tables]


def all_reduce_sparse_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Average sparse gradients over the ranks with dense collectives (all_gather of each rank's
    coalesced rows, padded to the largest row count), instead of gloo's sparse all-reduce.

    DDP leaves these tables out of its reducer (see train_ddp): one worker of a 2-process run
    aborted with heap corruption ("malloc(): unaligned tcache chunk detected") inside backward,
    where DDP launches gloo's sparse all-reduce, in about 1 of 50 launches. The result is the
    same average DDP would give: the sum of the W local gradients / W."""
    for p in params:
        grad = p.grad
        if grad is None:  # this rank's batch touched no row: an empty gradient
            grad = torch.sparse_coo_tensor(
                torch.empty((1, 0), dtype=torch.int64, device=p.device),
                torch.empty((0, *p.shape[1:]), dtype=p.dtype, device=p.device),
                p.shape,
            )
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        count = torch.tensor([rows.numel()], dtype=torch.int64, device=p.device)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        width = int(max(int(c) for c in counts))
        padded_rows = torch.zeros(width, dtype=torch.int64, device=p.device)
        padded_rows[: rows.numel()] = rows
        padded_values = torch.zeros((width, *values.shape[1:]), dtype=values.dtype, device=p.device)
        padded_values[: rows.numel()] = values
        all_rows = [torch.empty_like(padded_rows) for _ in range(world)]
        all_values = [torch.empty_like(padded_values) for _ in range(world)]
        dist.all_gather(all_rows, padded_rows)
        dist.all_gather(all_values, padded_values)
        keep = [slice(0, int(c)) for c in counts]
        p.grad = (
            torch.sparse_coo_tensor(
                torch.cat([r[k] for r, k in zip(all_rows, keep, strict=True)]).unsqueeze(0),
                torch.cat([v[k] for v, k in zip(all_values, keep, strict=True)]),
                p.shape,
            ).coalesce()
            / world
        )


def _ddp_config(config: TrainConfig, backend: str) -> TrainConfig:
    if backend == "nccl":  # no sparse all-reduce in NCCL: dense tables (see the module docstring)
        return config.model_copy(
            update={"model_params": {**config.model_params, "sparse_embeddings": False}}
        )
    return config


def _train_epoch(
    ddp_model: Any,
    optimizer: Any,
    split: Any,
    config: TrainConfig,
    epoch: int,
    rank: int,
    world: int,
    device: torch.device,
    regulariser: EmbeddingL2,
    scaler: Any = None,
    sparse_params: list[torch.nn.Parameter] | None = None,
) -> tuple[float, int]:
    """One epoch on this rank's share; returns (global mean loss, global samples seen).

    `scaler`: a torch.amp.GradScaler for fp16 on CUDA (None otherwise)."""
    ddp_model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for b, idx in enumerate(
        local_batches(
            len(split), config.batch_size, rank=rank, world=world, seed=config.seed, epoch=epoch
        )
    ):
        target, history, label = (
            split.target[idx].to(device),
            split.history[idx].to(device),
            split.label[idx].to(device),
        )
        with autocast(config.precision, device.type):
            logits = ddp_model(target, history)
        loss = loss_fn(logits.float(), label)  # the loss in float32 at every precision
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {b} on rank {rank}; training stopped"
            )
        optimizer.zero_grad(set_to_none=True)
        # The embedding-row L2 of `psrq train` (train.EmbeddingL2), on this rank's rows; the
        # all-reduce below averages its gradient like the loss's.
        objective = loss + regulariser.penalty(len(idx)) if regulariser.weight > 0 else loss
        if scaler is None:
            objective.backward()  # DDP all-reduces the dense gradients here
            if sparse_params:
                all_reduce_sparse_gradients(sparse_params, world)
            optimizer.step()
        else:  # fp16: scale the loss, unscale and skip steps with inf/NaN gradients
            scaler.scale(objective).backward()
            if sparse_params:
                all_reduce_sparse_gradients(sparse_params, world)
            for opt in optimizer.optimizers:
                scaler.step(opt)
            scaler.update()
        total += torch.tensor(
            [loss.item() * len(idx), len(idx)], dtype=torch.float64, device=device
        )
    dist.all_reduce(total)
    return float(total[0] / max(total[1], 1)), int(total[1])


def _check_distributable(model: Any) -> None:
    """Models that fit item features or pre-train a module first (QARM, SimTier+MAKE) run those
    steps in `train.prepare_model`, which this loop does not distribute yet: refuse, don't skip."""
    from psrq.rank.models import RankingModel

    fits = type(model).fit_item_features is not RankingModel.fit_item_features
    if fits or model.pretraining_phases():
        raise ConfigError(
            f"--nproc > 1 does not support {model.name} yet (it fits item features or pre-trains a module "
            "before the main loop); train it with --nproc 1"
        )


def train_ddp(
    data: RankingData,
    config: TrainConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult | None:
    """Train in the current process group; returns the TrainResult on rank 0, None elsewhere."""
    from rich.console import Console
    from torch.nn.parallel import DistributedDataParallel

    rank, world = dist.get_rank(), dist.get_world_size()
    backend = dist.get_backend()
    device = (
        torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        if backend == "nccl"
        else torch.device("cpu")
    )
    console = Console(stderr=True, quiet=not progress or rank != 0)
    if "train" not in data.splits or len(data.splits["train"]) == 0:
        raise InputError("no training samples (samples/train.parquet is empty)")
    config = _ddp_config(config, backend)
    check_precision(config.precision, device.type)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
    model = make_model(config, data.tables).to(device)
    _check_distributable(model)
    optimizer = make_optimizer(model, config)
    regulariser = EmbeddingL2(model, config.embedding_l2 or 0.0)
    # broadcast_buffers=False: the buffers are the frozen item tables, identical on every rank;
    # re-sending them before every forward would cost more than the step.
    with (
        warnings.catch_warnings()
    ):  # torch 2.13 deprecates the name, and says to keep it for this use
        warnings.simplefilter("ignore", FutureWarning)
        # Sparse tables are averaged by all_reduce_sparse_gradients after backward, not by
        # DDP's reducer (gloo's sparse all-reduce; see that function).
        sparse_names = sparse_parameter_names(model)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, sparse_names)
        ddp_model = DistributedDataParallel(
            model,
            broadcast_buffers=False,
            device_ids=[device.index] if device.type == "cuda" else None,
        )
    named = dict(model.named_parameters())
    sparse_params = [named[n] for n in sparse_names if named[n].requires_grad]
    state = {
        "epoch": -1,
        "best_epoch": -1,
        "best_auc": -math.inf,
        "bad_epochs": 0,
        "history": [],
        "best_state": None,
    }
    ckpt = Path(out) / "checkpoint" if out is not None else None
    if resume and ckpt is not None and (ckpt / "manifest.json").is_file():
        state = _load_checkpoint(ckpt, model, optimizer, config, data.tables)
        console.print(f"resuming after epoch {state['epoch'] + 1} from {ckpt}")
    valid = data.splits.get("valid")
    for epoch in range(state["epoch"] + 1, config.epochs):
        started = time.perf_counter()
        loss, seen = _train_epoch(
            ddp_model,
            optimizer,
            data.splits["train"],
            config,
            epoch,
            rank,
            world,
            device,
            regulariser,
            scaler,
            sparse_params,
        )
        seconds = time.perf_counter() - started
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "train_samples_per_s": seen / seconds,
            "processes": world,
        }
        score = torch.tensor([-loss], dtype=torch.float64, device=device)
        if rank == 0 and valid is not None and len(valid):
            record["valid"] = evaluate_split(model, valid, config.eval_batch_size, device)
            if not math.isnan(record["valid"]["auc"]):
                score[0] = record["valid"]["auc"]
        dist.broadcast(score, src=0)  # every rank takes the same early-stopping decision
        state["history"].append(record)
        if float(score[0]) > state["best_auc"]:
            state.update(
                best_auc=float(score[0]),
                best_epoch=epoch,
                bad_epochs=0,
                best_state=copy.deepcopy(model.state_dict()),
            )
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        v = record.get("valid", {})
        console.print(
            f"epoch {epoch + 1}: train loss {loss:.4f}  valid AUC {v.get('auc', math.nan):.4f}  {record['train_samples_per_s']:,.0f} samples/s on {world} processes"
        )
        if ckpt is not None and rank == 0:
            _write_checkpoint(ckpt, model, optimizer, config, data.tables, state)
        dist.barrier()  # nobody runs ahead of (or resumes from) a half-written checkpoint
        if config.patience and state["bad_epochs"] >= config.patience:
            break
    if rank != 0:
        return None
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model = model.cpu()
    metrics = {
        name: evaluate_split(model, split, config.eval_batch_size)
        for name, split in data.splits.items()
        if name != "train" and len(split)
    }
    result = TrainResult(
        model, data.tables, config, state["best_epoch"] + 1, state["history"], metrics
    )
    if out is not None:
        from psrq.artifacts import write_json

        save_model(Path(out) / "model", result)
        write_json(
            Path(out) / "metrics.json",
            {
                "best_epoch": result.best_epoch,
                "metrics": metrics,
                "history": result.history,
                "distributed": {"processes": world, "backend": backend},
            },
        )
    return result


# ---- the torchrun entry point --------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m psrq.rank.ddp",
        description="Data-parallel `psrq train` (run under torchrun).",
    )
    ap.add_argument("--samples", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sids", type=Path)
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--model", default="MCCA")
    ap.add_argument("--model-params", default="{}", help="JSON dict of model keyword arguments.")
    ap.add_argument("--preset", default="default")
    for name, typ in (
        ("epochs", int),
        ("lr", float),
        ("batch-size", int),
        ("patience", int),
        ("min-id-count", int),
        ("weight-decay", float),
        ("embedding-l2", float),
        ("dropout", float),
    ):
        ap.add_argument(f"--{name}", type=typ)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--threads", type=int, help="torch threads per process (default: cores / processes)."
    )
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if "RANK" not in os.environ:
        raise SystemExit(
            "psrq.rank.ddp runs under torchrun: torchrun --standalone --nproc_per_node N -m psrq.rank.ddp ... (or psrq train --nproc N)"
        )
    # A crash in a worker (native code: gloo, OpenMP, torch) prints every thread's Python stack
    # to stderr, which torchrun relays; PYTHONFAULTHANDLER=1 does the same from outside.
    faulthandler.enable()
    dist.init_process_group(backend=backend_for_device())
    try:
        world = dist.get_world_size()
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        settings = with_overrides(
            TrainingSettings(),
            {
                "preset": args.preset,
                "epochs": args.epochs,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "patience": args.patience,
                "min_id_count": args.min_id_count,
                "embedding_l2": args.embedding_l2,
                "dropout": args.dropout,
                "weight_decay": args.weight_decay,
                "precision": args.precision,
            },
        )
        config = settings.train_config(
            model=args.model, model_params=json.loads(args.model_params), seed=args.seed
        )
        data = load_ranking_data(
            args.samples,
            sids=args.sids,
            embeddings=args.embeddings,
            max_history=config.max_history,
            min_id_count=config.min_id_count,
        )
        result = train_ddp(data, config, out=args.out, resume=args.resume, progress=not args.quiet)
        if result is not None and not args.quiet:
            print(
                json.dumps({"best_epoch": result.best_epoch, "metrics": result.metrics}, indent=2)
            )
        # Rank 0 evaluates and writes the model directory after the last collective: the other
        # ranks wait here, so no process tears gloo down while a peer may still talk to it.
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def launch(nproc: int, argv: list[str]) -> int:
    """Run this module under torch.distributed.run with `nproc` local processes; returns the exit code."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "psrq.rank.ddp",
        *argv,
    ]
    # torchrun sets OMP_NUM_THREADS=1 per process unless told; cores / processes is what we want.
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
