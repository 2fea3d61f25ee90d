"""Engines: where "map a frozen model over Parquet shards" runs (local process or Ray Data),
and the torchrun entry point for training (psrq.rank.ddp). Stages call `map_parquet` and do not
know which engine runs them."""

from psrq.engines.base import ENGINES, EngineConfig, MapResult, list_shards, map_parquet

__all__ = ["ENGINES", "EngineConfig", "MapResult", "list_shards", "map_parquet"]
