"""The one seam stages call to map a frozen model over Parquet shards.

    result = map_parquet("items/", "sids/", AssignMapper, {"model_dir": "model"},
                         columns=["item_id", "emb_text"], engine=EngineConfig(kind="ray"))

A *mapper* is a class: its constructor loads the frozen model once (one per Ray actor, or one in
the local process), and calling it maps a pyarrow Table batch to a pyarrow Table batch whose rows
depend only on the rows of the input batch. That row-locality is what makes the local and the Ray
engine give the same rows: only the order of output rows across batches may differ.

Engines:

- ``local``: one process reads each input shard in record batches of ``batch_rows`` and writes
  one output shard per input shard (``part-00000.parquet``, ...). Memory: one batch + the model.
- ``ray``: ``ray.data.read_parquet`` -> ``map_batches`` on an actor pool
  (``ActorPoolStrategy``), ``write_parquet`` (psrq.engines.ray_engine).

Output: a directory of Parquet shards with the mapper's schema (and its key-value metadata).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from psrq.errors import ConfigError, InputError

EngineKind = Literal["local", "ray"]
ENGINES = ("local", "ray")


class Mapper(Protocol):
    """Constructed once per worker with keyword arguments; maps a batch Table to a Table."""

    def __call__(self, batch: Any) -> Any: ...


@dataclass(frozen=True)
class EngineConfig:
    """Where and how a map over shards runs.

    kind: "local" or "ray". address: a Ray cluster to join ("auto", "ray://host:10001"); None
    starts a bounded local Ray (num_cpus CPUs, object_store_mb of shared memory, no dashboard).
    actors: size of the actor pool (one frozen model each). actor_cpus: CPUs each actor reserves;
    kept below num_cpus / actors so read and write tasks always find a CPU (an actor pool that
    reserves every CPU starves the reads and the pipeline hangs). gpus_per_actor: None = 1 when
    the cluster has GPUs, else 0. batch_rows: rows per mapper call.
    """

    kind: EngineKind = "local"
    address: str | None = None
    num_cpus: int = 2
    object_store_mb: int = 256
    actors: int = 1
    actor_cpus: float = 0.5
    gpus_per_actor: float | None = None
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}")
        if self.batch_rows < 1 or self.actors < 1 or self.num_cpus < 1:
            raise ConfigError("engine: batch_rows, actors and num_cpus must be >= 1")
        if self.object_store_mb < 80:
            raise ConfigError(
                f"engine: object_store_mb must be >= 80 (Ray's minimum), got {self.object_store_mb}"
            )
        if self.address is None and self.actors * self.actor_cpus >= self.num_cpus:
            raise ConfigError(
                f"engine: {self.actors} actors x {self.actor_cpus} CPUs reserve all {self.num_cpus} CPUs; "
                "the read tasks would never run. Lower actors/actor_cpus or raise num_cpus."
            )


@dataclass
class MapResult:
    """What a map wrote: the output directory, its shard files, rows written, wall seconds."""

    out_dir: Path
    files: list[Path]
    n_rows: int
    seconds: float
    engine: str
    extra: dict[str, Any] = field(default_factory=dict)


def list_shards(path: str | os.PathLike[str]) -> list[Path]:
    """A Parquet file -> [file]; a directory -> its *.parquet files (sorted, not hidden)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file() and f.suffix == ".parquet" and not f.name.startswith((".", "_"))
        )
        if not files:
            raise InputError(f"{p}: no .parquet files in this directory")
        return files
    raise InputError(f"Parquet input not found: {p}")


def shard_schema(path: str | os.PathLike[str]) -> Any:
    """Arrow schema of the first shard (all shards of a data set share it)."""
    import pyarrow.parquet as pq

    first = list_shards(path)[0]
    try:
        return pq.read_schema(first)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{first}: not a readable Parquet file ({e})") from e


def _fresh_output_dir(out_dir: Path) -> Path:
    """Write into a temporary sibling; `_publish` renames it over `out_dir` when complete."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


# A shard directory carries this marker so a later run may replace it (psrq replaces only what
# psrq wrote: psrq.outputs) and so it is never mistaken for someone else's folder.
SHARDS_MANIFEST = {"format_version": 1, "kind": "parquet_shards"}


def _publish(tmp: Path, out_dir: Path) -> list[Path]:
    from psrq.artifacts import write_json
    from psrq.outputs import check_replaceable

    check_replaceable(out_dir, as_dir=True, option="output directory")
    write_json(
        tmp / "manifest.json",
        {**SHARDS_MANIFEST, "files": sorted(f.name for f in list_shards(tmp))},
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return list_shards(out_dir)


def map_parquet(
    inputs: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    mapper: type,
    mapper_kwargs: dict[str, Any],
    *,
    columns: list[str] | None = None,
    engine: EngineConfig | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> MapResult:
    """Map `mapper(**mapper_kwargs)` over every row of the shards under `inputs`; write `out_dir`.

    `out_dir` is replaced atomically (written to a temporary sibling, then renamed).
    """
    from psrq.outputs import check_replaceable

    engine = engine or EngineConfig()
    shards = list_shards(inputs)
    out = Path(out_dir)
    check_replaceable(out, as_dir=True, option="output directory")  # before any work, not after it
    tmp = _fresh_output_dir(out)
    started = time.perf_counter()
    try:
        if engine.kind == "ray":
            from psrq.engines.ray_engine import ray_map_parquet

            n_rows, extra = ray_map_parquet(
                shards, tmp, mapper, mapper_kwargs, columns=columns, engine=engine
            )
        else:
            n_rows, extra = _local_map_parquet(
                shards,
                tmp,
                mapper,
                mapper_kwargs,
                columns=columns,
                batch_rows=engine.batch_rows,
                on_batch=on_batch,
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = _publish(tmp, out)
    return MapResult(out, files, n_rows, time.perf_counter() - started, engine.kind, extra)


def _local_map_parquet(
    shards: list[Path],
    out_dir: Path,
    mapper: type,
    mapper_kwargs: dict[str, Any],
    *,
    columns: list[str] | None,
    batch_rows: int,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fn = mapper(**mapper_kwargs)
    n_rows = 0
    for i, shard in enumerate(shards):
        writer: pq.ParquetWriter | None = None
        try:
            for rb in pq.ParquetFile(shard).iter_batches(batch_size=batch_rows, columns=columns):
                table = fn(pa.Table.from_batches([rb]))
                if writer is None:
                    writer = pq.ParquetWriter(out_dir / f"part-{i:05d}.parquet", table.schema)
                writer.write_table(
                    table.cast(writer.schema) if table.schema != writer.schema else table
                )
                n_rows += table.num_rows
                if on_batch is not None:
                    on_batch(rb.num_rows)
        finally:
            if writer is not None:
                writer.close()
        pa.default_memory_pool().release_unused()  # keep RSS flat across shards
    return n_rows, {"shards_in": len(shards)}
