"""Atomic artifacts: model directories with a manifest, and files that are never half written.

Every stage writes into a temporary sibling first and renames it into place, so an interrupted
run leaves either the old artifact or the new one, never a mixture. A model directory holds a
``manifest.json`` (format version, kind, parameters, seed, input fingerprint, SHA-256 of every
file) that `read_model_dir` checks before anything is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from psrq.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`.

    Works for files and directories alike: write whatever you like at the yielded path.
    On an exception the temporary is removed and `path` is left untouched. psrq replaces only
    what psrq wrote: a file replaces a file, a directory replaces an empty or psrq directory
    (psrq.outputs.check_replaceable); anything else raises OutputError and is left as it is.
    """
    from psrq.outputs import check_replaceable

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if not staged.exists():
            raise ArtifactError(f"nothing was written for {target}")
        check_replaceable(target, as_dir=staged.is_dir())
        if target.is_dir() and not target.is_symlink():
            # Directories cannot be replaced by one rename: move the old one aside first.
            old = tmp / (target.name + ".old")
            os.replace(target, old)
            os.replace(staged, target)
        else:
            os.replace(staged, target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float (an undefined metric) as None: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (undefined metrics as null, never a bare NaN), indented."""
    return json.dumps(
        json_safe(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False
    )


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically; NaN and inf are written as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps(obj) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | os.PathLike[str], table: Any, **kwargs: Any) -> None:
    """Write a pyarrow Table (or a polars/pandas frame) to Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = table.to_arrow() if hasattr(table, "to_arrow") else pa.Table.from_pandas(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_array(x: np.ndarray, max_rows: int = 10_000) -> str:
    """A cheap, stable fingerprint of a matrix: shape, dtype and up to `max_rows` evenly spaced rows.

    Hashing a 10M x 384 matrix in full would take longer than encoding it; the sampled rows
    catch every realistic "different input" case (other data, other order, other model).
    """
    h = hashlib.sha256()
    h.update(repr((tuple(x.shape), str(x.dtype))).encode())
    n = x.shape[0] if x.ndim else 0
    if n:
        idx = np.unique(np.linspace(0, n - 1, num=min(n, max_rows)).astype(np.int64))
        h.update(np.ascontiguousarray(np.asarray(x[idx])).tobytes())
    return h.hexdigest()[:32]


def fingerprint_files(paths: list[str | os.PathLike[str]]) -> str:
    """Fingerprint of files by content, for caching stages on their inputs."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        h.update(p.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()[:32]


def fingerprint_obj(obj: Any) -> str:
    """Fingerprint of a JSON-serialisable object (parameters, configs)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@contextlib.contextmanager
def write_model_dir(
    path: str | os.PathLike[str],
    *,
    kind: str,
    params: dict[str, Any],
    seed: int | None = None,
    input_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[Path]:
    """Write a model directory atomically: yield a staging dir, then add the manifest and rename.

    Usage::

        with write_model_dir(path, kind="PSRQ", params=est.get_params(), seed=0) as d:
            np.save(d / "codebook_0.npy", C0)
    """
    from psrq import __version__

    with atomic_path(path) as staged:
        staged.mkdir()
        yield staged
        files = {
            str(p.relative_to(staged)): sha256_file(p)
            for p in sorted(staged.rglob("*"))
            if p.is_file()
        }
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "psrq_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": params,
            "seed": seed,
            "input_fingerprint": input_fingerprint,
            "files": files,
            **(extra or {}),
        }
        manifest = json.loads(dumps(manifest))  # what a reader will parse, digested below
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        (staged / MANIFEST).write_text(dumps(manifest) + "\n")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content minus its own digest field (canonical JSON).

    The manifest decides behaviour (parameters, normalisation, kinds) and lists the checksum of
    every other file, so covering it makes every file of a model directory tamper-evident.
    """
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    blob = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def read_model_dir(
    path: str | os.PathLike[str], *, kind: str | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Check a model directory (manifest, version, kind, checksums) and return its manifest.

    Raises ArtifactError naming the directory and what is wrong with it.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"model directory not found: {root}")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root} is not a psrq model directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mpath} is corrupted: {e}") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath} is corrupted: not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{root} has format_version {version!r}; this psrq reads format_version {FORMAT_VERSION}"
        )
    recorded = manifest.get(MANIFEST_DIGEST)
    if recorded is None:
        raise ArtifactError(
            f"{mpath} has no {MANIFEST_DIGEST}: it was edited or written by an older psrq; rewrite the model"
        )
    try:
        actual = manifest_digest(manifest)
    except ValueError as e:  # NaN/inf cannot be in a manifest psrq wrote
        raise ArtifactError(f"{mpath} is corrupted: {e}") from e
    if actual != recorded:
        raise ArtifactError(
            f"{mpath} was modified after it was written (its {MANIFEST_DIGEST} does not match its content)"
        )
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and manifest.get("kind") not in kinds:
        raise ArtifactError(
            f"{root} holds a {manifest.get('kind')!r} model, expected {' or '.join(kinds)}"
        )
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ArtifactError(f"{mpath} is corrupted: 'files' is not a mapping")
    for name, digest in files.items():
        f = root / name
        if not f.is_file():
            raise ArtifactError(f"{root}: file {name} listed in the manifest is missing")
        if sha256_file(f) != digest:
            raise ArtifactError(f"{root}: file {name} is corrupted (checksum mismatch)")
    return manifest
