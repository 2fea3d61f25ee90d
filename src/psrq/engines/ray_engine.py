"""Ray Data back end of `psrq.engines.map_parquet` (optional extra: ``pip install 'psrq[ray]'``).

read_parquet -> map_batches(mapper class, ActorPoolStrategy: one frozen model per actor) ->
write_parquet. Without an address a bounded local Ray starts (and is shut down afterwards); an
already initialised Ray (a test fixture, a notebook) is reused and left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psrq.errors import ConfigError


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # the Data library is a separate extra of ray
    except ImportError as e:
        raise ConfigError(
            "the Ray engine needs Ray Data: pip install 'psrq[ray]' (ray[data]==2.60.*)"
        ) from e
    return ray


def local_init_kwargs(engine: Any) -> dict[str, Any]:
    """ray.init arguments for a bounded local Ray: a 2-core machine shared with others survives it."""
    return {
        "num_cpus": engine.num_cpus,
        "object_store_memory": engine.object_store_mb << 20,
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }


@contextmanager
def ray_session(engine: Any) -> Iterator[Any]:
    """Yield the ray module with a Ray running: joined (address), reused, or started locally."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray
        return
    if engine.address:
        # Workers on other machines do not inherit this shell: ship PYTHONPATH if the user set one.
        env = (
            {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
            if os.environ.get("PYTHONPATH")
            else None
        )
        ray.init(address=engine.address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(**local_init_kwargs(engine))
    try:
        yield ray
    finally:
        ray.shutdown()


def gpus_per_actor(ray: Any, engine: Any) -> float:
    if engine.gpus_per_actor is not None:
        return float(engine.gpus_per_actor)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def ray_map_parquet(
    shards: list[Path],
    out_dir: Path,
    mapper: type,
    mapper_kwargs: dict[str, Any],
    *,
    columns: list[str] | None,
    engine: Any,
) -> tuple[int, dict[str, Any]]:
    """Run the map on Ray; returns (rows written, details)."""
    with ray_session(engine) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        gpus = gpus_per_actor(ray, engine)
        # Columns pruned at read time: the read tasks never materialise the columns the map
        # does not use (select_columns after the read would load them first).
        ds = ray.data.read_parquet([str(s.resolve()) for s in shards], columns=columns)
        ds = ds.map_batches(
            mapper,
            fn_constructor_kwargs=mapper_kwargs,
            batch_size=engine.batch_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=engine.actors),
            num_cpus=engine.actor_cpus,
            num_gpus=gpus,
        )
        ds.write_parquet(str(out_dir.resolve()))
        n_rows = sum(_parquet_rows(p) for p in out_dir.glob("*.parquet"))
        return n_rows, {
            "actors": engine.actors,
            "gpus_per_actor": gpus,
            "address": engine.address or "local",
        }


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)
