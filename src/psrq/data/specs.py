"""Build a `DatasetSpec` (inputs to fingerprint + a loader call) from a data set name and paths.

Shared by `psrq data prepare` and the `psrq run` pipeline so both prepare data the same way.
"""

from __future__ import annotations

from pathlib import Path

from psrq.errors import ConfigError

from .prepare import DatasetSpec

DATASETS = ("lastfm2k", "music4all", "amazon2014", "amazon2023", "parquet", "synth", "tiktok")


def _need(value: Path | None, option: str, dataset: str) -> Path:
    if value is None:
        raise ConfigError(f"psrq data prepare {dataset} needs {option}")
    return Path(value)


def dataset_spec(
    name: str,
    *,
    source: Path | None = None,
    root: Path | None = None,
    reviews: Path | None = None,
    meta: Path | None = None,
    image_features: Path | None = None,
    image_dim: int = 4096,
    items: Path | None = None,
    interactions: Path | None = None,
    min_year: int = 2005,
    skip_empty_text: bool = False,
) -> DatasetSpec:
    """The spec for data set `name` (one of DATASETS); raises ConfigError naming a missing path."""
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    on_empty = "skip" if skip_empty_text else "raise"
    if name == "lastfm2k":
        from .lastfm2k import FILES, builtin_root, load_lastfm2k

        base = Path(root) if root else builtin_root()
        return DatasetSpec(
            name,
            [base / f for f in FILES],
            lambda: load_lastfm2k(base, min_year=min_year),
            {"min_year": min_year},
        )
    if name == "music4all":
        from .music4all import load_music4all, music4all_inputs

        base = _need(root or source, "--root DIR", name)
        return DatasetSpec(
            name,
            music4all_inputs(base),
            lambda: load_music4all(base, on_empty_text=on_empty),
            {"on_empty_text": on_empty},
        )
    if name in ("amazon2014", "amazon2023"):
        from .amazon import load_amazon2014, load_amazon2023

        load = load_amazon2014 if name == "amazon2014" else load_amazon2023
        r, m = _need(reviews, "--reviews FILE", name), _need(meta, "--meta FILE", name)
        inputs = [r, m] + ([Path(image_features)] if image_features else [])
        return DatasetSpec(
            name,
            inputs,
            lambda: load(r, m, image_features=image_features, image_dim=image_dim),
            {"image_dim": image_dim},
        )
    if name == "tiktok":
        from .tiktok import load_tiktok, tiktok_inputs

        base = _need(
            root or source,
            "--path DIR (the folder holding items.parquet and interactions.parquet)",
            name,
        )
        return DatasetSpec(name, tiktok_inputs(base), lambda: load_tiktok(base))
    if name == "parquet":
        from .parquet_source import load_parquet

        i, x = _need(items, "--items FILE", name), _need(interactions, "--interactions FILE", name)
        return DatasetSpec(
            name,
            [i, x],
            lambda: load_parquet(i, x, on_empty_text=on_empty),
            {"on_empty_text": on_empty},
        )
    from .parquet_source import load_synth_dir

    base = _need(
        source or root, "the SYNTHETIC catalogue directory (psrq data prepare synth DIR)", name
    )
    inputs = [
        base / "items.parquet",
        base / "interactions.parquet",
        *sorted((base / "embeddings").glob("*.parquet")),
    ]
    return DatasetSpec(name, inputs, lambda: load_synth_dir(base))
