"""`prepare`: load a data set, build the samples, write everything atomically, cache on inputs.

Output directory layout::

    out/items.parquet  out/interactions.parquet  out/embeddings/<modality>.parquet (precomputed, if any)
    out/samples/{train,valid,test}.parquet  out/samples/meta.json

meta.json records the fingerprint of the inputs (file contents, the loader's options) and the
protocol configuration; a rerun with the same fingerprint does nothing and says "up to date".
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from psrq.artifacts import atomic_path, fingerprint_obj, sha256_file, write_parquet
from psrq.formats.samples import META, SPLITS, split_path, write_samples

from .protocol import ProtocolConfig, build_samples, print_split_statistics
from .schema import DataSet


@dataclass
class DatasetSpec:
    """How to load one data set: its input paths (for the fingerprint) and a loader call."""

    name: str
    inputs: list[Path]
    load: Callable[[], DataSet]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrepareResult:
    out: Path
    meta: dict[str, Any]
    up_to_date: bool


def fingerprint_inputs(paths: list[Path]) -> str:
    """Content hash of files; for directories (Music4All lyrics/, audios/) a hash of the listing
    (relative path, size, mtime) because hashing 100k audio files would dwarf the work itself."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(str(p.resolve()).encode())
        if p.is_file():
            h.update(sha256_file(p).encode())
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(b"<missing>")
    return h.hexdigest()[:32]


def _read_meta(out: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((out / "samples" / META).read_text())
    except (OSError, ValueError):
        return None


def _outputs_present(out: Path) -> bool:
    names = ["items.parquet", "interactions.parquet", *(f"samples/{s}.parquet" for s in SPLITS)]
    return all((out / n).is_file() for n in names)


def prepare(
    spec: DatasetSpec,
    config: ProtocolConfig,
    out: str | Path,
    *,
    force: bool = False,
    verbose: bool = True,
) -> PrepareResult:
    """Prepare `spec` under `config` into `out` (or reuse the cached result)."""
    out = Path(out)
    fingerprint = fingerprint_obj(
        {
            "dataset": spec.name,
            "inputs": fingerprint_inputs(spec.inputs),
            "options": spec.options,
            "protocol": config.to_dict(),
        }
    )
    meta = _read_meta(out)
    if not force and meta and meta.get("fingerprint") == fingerprint and _outputs_present(out):
        if verbose:
            print(f"{out}: up to date (fingerprint {fingerprint})")
        return PrepareResult(out=out, meta=meta, up_to_date=True)

    data = spec.load()
    samples = build_samples(data, config)
    content_until = None
    if data.rebuild_items is not None:
        # Item text built from interactions (tags) must not see the validation/test period.
        content_until = samples.stats["boundaries"]["train_until"]
        data = replace(
            data, items=data.rebuild_items(samples.stats["boundaries"]["train_until_ts"])
        )
    meta = {
        "dataset": spec.name,
        "synthetic": data.synthetic,
        "fingerprint": fingerprint,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": [str(p) for p in spec.inputs],
        "loader_options": {**spec.options, **data.options},
        "items": data.items.num_rows,
        "item_content_until": content_until,
        # precomputed modalities written to embeddings/<modality>.parquet (emb_ columns, image features)
        "embeddings": sorted(data.embeddings),
        "interactions": data.interactions.num_rows,
        **samples.stats,
    }
    write_outputs(data, samples.tables, meta, out)
    if verbose:
        title = f"{spec.name}{' (SYNTHETIC)' if data.synthetic else ''}: {data.items.num_rows:,} items, {data.interactions.num_rows:,} interactions"
        print_split_statistics(samples.stats, title=title)
        for warning in label_balance_warnings(samples.tables, out / "samples"):
            print(f"warning: {warning}")
        skipped = {k: v for k, v in samples.stats["skipped"].items() if v}
        if skipped:
            print("skipped: " + ", ".join(f"{k} = {v:,}" for k, v in skipped.items()))
        print(f"wrote {out}")
    return PrepareResult(out=out, meta=meta, up_to_date=False)


def label_balance_warnings(tables: dict[str, pa.Table], where: Path) -> list[str]:
    """One sentence per split whose labels are all positive or all negative: AUC and GAUC are
    undefined there (null in metrics JSON), and a model trained on one class learns nothing."""
    import pyarrow.compute as pc

    out = []
    for name, table in tables.items():
        if "label" not in table.column_names or table.num_rows == 0:
            continue
        positives = int(pc.sum(pc.cast(table.column("label"), pa.int64())).as_py() or 0)
        if positives in (0, table.num_rows):
            kind = "positive" if positives else "negative"
            out.append(
                f"{where / name}.parquet: all {table.num_rows:,} labels are {kind}; AUC and GAUC will be undefined"
            )
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _with_metadata(table: pa.Table, data: DataSet) -> pa.Table:
    extra = {
        b"psrq.dataset": data.name.encode(),
        b"psrq.synthetic": b"true" if data.synthetic else b"false",
    }
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})


def write_outputs(
    data: DataSet, tables: dict[str, pa.Table], meta: dict[str, Any], out: Path
) -> None:
    """Write items, interactions, embeddings and samples; each file (and samples/) atomically.

    samples/ goes last and carries meta.json, so a crash leaves no meta.json claiming fresh data.
    """
    import json

    out.mkdir(parents=True, exist_ok=True)
    for key, table in (("items", data.items), ("interactions", data.interactions)):
        target = out / f"{key}.parquet"
        if key in data.passthrough and _same_file(data.passthrough[key], target):
            continue  # reading and rewriting the file in place would only change its bytes
        write_parquet(target, _with_metadata(table, data))
    for modality, emb in data.embeddings.items():
        target = out / "embeddings" / f"{modality}.parquet"
        if isinstance(emb, Path):
            if not _same_file(emb, target):
                with atomic_path(target) as tmp:
                    shutil.copyfile(emb, tmp)
        else:
            write_parquet(target, emb)
    with atomic_path(out / "samples") as staged:
        staged.mkdir()
        for name, table in tables.items():
            write_samples(split_path(staged, name), _with_metadata(table, data), atomic=False)
        (staged / META).write_text(json.dumps(meta, indent=2) + "\n")
