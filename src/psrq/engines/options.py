"""Command-line options shared by every command that can run on an engine (embed, quantize, assign).

Declared once here. A command takes all of them with one decorator and receives them as one
keyword-only `engine: EngineChoice` (its own defaults and `--engine` help given to the decorator):

    @engine_options(batch_rows=4096, engine_help="memory: ...; local / ray: ...")
    def embed_text(items: ..., out: ..., *, engine: EngineChoice) -> None:
        if engine.streamed:
            run_on(engine.config())

--engine, --address, --num-cpus, --object-store-mb, --actors, --actor-cpus, --batch-rows.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

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


@dataclass(frozen=True)
class EngineChoice:
    """What the engine options asked for: `memory` (no engine) or a local / Ray engine.

    settings: the other engine options by EngineConfig field name (address, num_cpus, ...).
    """

    kind: str = "memory"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def streamed(self) -> bool:
        """True for local / ray: the command streams Parquet shards and writes a directory of them."""
        return self.kind != "memory"

    def config(self) -> EngineConfig:
        """The EngineConfig of a streamed run (ConfigError for an unknown --engine)."""
        return EngineConfig(kind=self.kind, **self.settings)  # type: ignore[arg-type]


F = TypeVar("F", bound=Callable[..., Any])


def engine_options(
    *,
    engine_help: str,
    batch_rows: int,
    num_cpus: int = 2,
    object_store_mb: int = 256,
    actors: int = 1,
    actor_cpus: float = 0.5,
) -> Callable[[F], F]:
    """Add the engine options to a Typer command; it gets them as `engine: EngineChoice`.

    The command declares `*, engine: EngineChoice` (keyword-only); the options are appended
    after its own, with these defaults.
    """
    options = {
        "engine": (Annotated[str, typer.Option("--engine", help=engine_help)], "memory"),
        "address": (AddressOpt, None),
        "num_cpus": (NumCpusOpt, num_cpus),
        "object_store_mb": (ObjectStoreOpt, object_store_mb),
        "actors": (ActorsOpt, actors),
        "actor_cpus": (ActorCpusOpt, actor_cpus),
        "batch_rows": (BatchRowsOpt, batch_rows),
    }

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        if "engine" not in sig.parameters:
            raise TypeError(f"{func.__name__} must take `*, engine: EngineChoice`")
        own = [p for p in sig.parameters.values() if p.name != "engine"]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for name, (a, d) in options.items()
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            chosen = {name: kwargs.pop(name) for name in options}
            return func(*args, engine=EngineChoice(chosen.pop("engine"), chosen), **kwargs)

        params = [*own, *added]
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        if sig.return_annotation is not inspect.Signature.empty:
            command.__annotations__["return"] = sig.return_annotation
        return command  # type: ignore[return-value]

    return decorate
