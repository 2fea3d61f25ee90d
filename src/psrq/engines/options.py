"""Command-line options shared by every command that can run on an engine (embed, quantize, assign)."""

from __future__ import annotations

from typing import Annotated

import typer

from psrq.engines.base import EngineConfig

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray: join this cluster ('auto', 'ray://head:10001'); default: start a bounded local Ray.",
    ),
]
NumCpusOpt = Annotated[
    int, typer.Option("--num-cpus", min=1, help="Ray, local start: CPUs the local Ray may use.")
]
ObjectStoreOpt = Annotated[
    int,
    typer.Option(
        "--object-store-mb", min=80, help="Ray, local start: shared-memory object store in MB."
    ),
]
ActorsOpt = Annotated[
    int,
    typer.Option(
        "--actors",
        min=1,
        help="Ray: actor-pool size (one frozen model each; 1 GPU each when the cluster has GPUs).",
    ),
]
ActorCpusOpt = Annotated[
    float,
    typer.Option(
        "--actor-cpus",
        help="Ray: CPUs reserved per actor (kept below --num-cpus / --actors so reads can run).",
    ),
]
BatchRowsOpt = Annotated[
    int, typer.Option("--batch-rows", min=1, help="Rows per mapped batch (local and Ray).")
]


def engine_config(
    kind: str,
    *,
    address: str | None,
    num_cpus: int,
    object_store_mb: int,
    actors: int,
    actor_cpus: float,
    batch_rows: int,
) -> EngineConfig:
    return EngineConfig(
        kind=kind,  # type: ignore[arg-type]  (validated by EngineConfig)
        address=address,
        num_cpus=num_cpus,
        object_store_mb=object_store_mb,
        actors=actors,
        actor_cpus=actor_cpus,
        batch_rows=batch_rows,
    )
