"""Where quantizers read embeddings from: one small seam, three back ends.

An `EmbeddingSource` knows its row count and width, can return a subset of rows (for fitting
k-means on a seeded sample) and can stream all rows in batches (for assignment). This is what
lets a 10M-item catalogue be quantized without ever materialising it, or a 2d-wide copy of it:
numpy arrays, memory-mapped `.npy` files, and Parquet embedding columns read batch by batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from psrq.artifacts import fingerprint_array
from psrq.errors import InputError
from psrq.formats.embeddings import batch_matrix, describe_rows, null_rows

OnInvalid = Literal["raise", "drop"]


def _invalid_rows(batch: np.ndarray) -> np.ndarray:
    """Row indices holding NaN or inf."""
    return np.flatnonzero(~np.isfinite(batch).all(axis=1))


def _as_float_matrix(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if (
        arr.dtype == object
        or np.issubdtype(arr.dtype, np.complexfloating)
        or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)
    ):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D matrix [n_items, dim], got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise InputError(f"{name} has zero columns")
    return arr


class EmbeddingSource:
    """Rows of a float matrix, readable as a subset or in batches. Batches are float32."""

    name: str
    n_rows: int
    dim: int

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim] for sorted row indices."""
        raise NotImplementedError

    def iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, float32 [b, dim]) covering every row in order."""
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> np.ndarray:
        """A seeded uniform sample of min(n, n_rows) rows, in row order (deterministic)."""
        if n >= self.n_rows:
            return self.take(np.arange(self.n_rows))
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(self.n_rows, size=n, replace=False))
        return self.take(rows)

    def fingerprint(self) -> str:
        # The sampled rows alone would not change when rows are appended between samples.
        sampled = fingerprint_array(self.take(_spaced_rows(self.n_rows)))
        return f"{self.n_rows}x{self.dim}:{sampled}"


def _spaced_rows(n: int, k: int = 10_000) -> np.ndarray:
    return (
        np.unique(np.linspace(0, max(n - 1, 0), num=min(n, k)).astype(np.int64))
        if n
        else np.zeros(0, np.int64)
    )


class ArraySource(EmbeddingSource):
    """A numpy array or memory map. With on_invalid='drop', NaN/inf rows are skipped."""

    def __init__(self, x: Any, *, name: str = "X", on_invalid: OnInvalid = "raise") -> None:
        self.x = _as_float_matrix(x, name)
        self.name = name
        self.dim = int(self.x.shape[1])
        bad = self._scan_invalid()
        if len(bad) and on_invalid == "raise":
            raise InputError(
                f"{name} has {len(bad)} row(s) with NaN or inf: rows {describe_rows(bad)} "
                "(pass on_invalid='drop' to fit on the valid rows only)"
            )
        if on_invalid not in ("raise", "drop"):
            raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        self.keep: np.ndarray | None = None
        if len(bad):
            mask = np.ones(self.x.shape[0], dtype=bool)
            mask[bad] = False
            self.keep = np.flatnonzero(mask)
        self.dropped_rows = bad
        self.n_rows = int(self.x.shape[0] if self.keep is None else len(self.keep))

    def _scan_invalid(self, chunk: int = 262_144) -> np.ndarray:
        if np.issubdtype(self.x.dtype, np.integer) or self.x.dtype == bool:
            return np.zeros(0, dtype=np.int64)
        found = [
            start + _invalid_rows(np.asarray(self.x[start : start + chunk]))
            for start in range(0, self.x.shape[0], chunk)
        ]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def take(self, rows: np.ndarray) -> np.ndarray:
        real = rows if self.keep is None else self.keep[rows]
        return np.asarray(self.x[real], dtype=np.float32)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n_rows, batch_size):
            if self.keep is None:
                batch = self.x[start : start + batch_size]
            else:
                batch = self.x[self.keep[start : start + batch_size]]
            yield start, np.asarray(batch, dtype=np.float32)


class ParquetSource(EmbeddingSource):
    """Embedding column(s) of a Parquet file, read in record batches.

    `columns` is either one list/fixed-size-list column (one vector per row) or several numeric
    columns (one dimension each). Rows have no item IDs here, so a null vector cannot be skipped
    silently (psrq.formats.embeddings, the null rule): null or NaN/inf vectors raise an error
    naming the row; with
    on_invalid="drop" they are skipped instead (one scan of the file at construction finds them;
    `dropped_rows` lists their row numbers in the file, and row i of this source is then the
    i-th valid row).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: str | list[str],
        *,
        batch_rows: int = 65_536,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        import pyarrow.parquet as pq

        if on_invalid not in ("raise", "drop"):
            raise InputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        self.on_invalid = on_invalid
        self.dropped_rows = np.zeros(0, dtype=np.int64)

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"Parquet file not found: {self.path}")
        self.file = pq.ParquetFile(self.path)
        schema = self.file.schema_arrow
        self.columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise InputError(f"{self.path}: missing column(s) {missing}; available: {schema.names}")
        self.name = f"{self.path}:{','.join(self.columns)}"
        self.batch_rows = batch_rows
        self.n_rows = int(self.file.metadata.num_rows)
        first = self._first_row_width(schema)
        self.dim = first
        if on_invalid == "drop":
            self.dropped_rows = self._scan_dropped()
            self.n_rows -= len(self.dropped_rows)

    def _first_row_width(self, schema: Any) -> int:
        import pyarrow as pa

        if len(self.columns) > 1:
            for c in self.columns:
                t = schema.field(c).type
                if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
                    raise InputError(f"{self.path}: column {c!r} is {t}, not numeric")
            return len(self.columns)
        t = schema.field(self.columns[0]).type
        if pa.types.is_fixed_size_list(t):
            return int(t.list_size)
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise InputError(
                f"{self.path}: column {self.columns[0]!r} is {t}; expected a list of floats per row "
                "(or pass several numeric columns)"
            )
        # The width comes from the first valid vector; null/NaN rows are reported (or dropped)
        # when the rows are read, not here.
        start = 0
        for rb in self.file.iter_batches(batch_size=self.batch_rows, columns=self.columns):
            valid, _ = self._valid_part(rb, start)
            if len(valid):
                return int(valid.shape[1])
            start += rb.num_rows
        raise InputError(
            f"{self.path}: column {self.columns[0]!r} has no rows with a valid (non-null, finite) vector"
        )

    def _to_matrix(self, record_batch: Any, first_row: int) -> np.ndarray:
        if len(self.columns) > 1:
            cols = [record_batch.column(c).to_numpy(zero_copy_only=False) for c in self.columns]
            return np.stack(cols, axis=1).astype(np.float32, copy=False)
        return batch_matrix(
            record_batch.column(self.columns[0]),
            source=self.path,
            column=self.columns[0],
            first_row=first_row,
        )

    def _raw_batches(self) -> Iterator[tuple[int, np.ndarray]]:
        start = 0
        for rb in self.file.iter_batches(batch_size=self.batch_rows, columns=self.columns):
            if self.on_invalid == "drop":
                yield start, self._valid_part(rb, start)[0]
            else:
                yield start, self._to_matrix(rb, start)
            start += rb.num_rows

    def _valid_part(self, record_batch: Any, first_row: int) -> tuple[np.ndarray, np.ndarray]:
        """(float32 matrix of the batch's valid rows, in-batch indices of the invalid rows)."""
        import pyarrow as pa

        valid = np.ones(record_batch.num_rows, dtype=bool)
        for c in self.columns:
            valid[null_rows(record_batch.column(c))] = False
        part = record_batch if valid.all() else record_batch.filter(pa.array(valid))
        mat = self._to_matrix(part, first_row)
        finite = np.isfinite(mat).all(axis=1)
        valid[np.flatnonzero(valid)[~finite]] = False
        return mat[finite], np.flatnonzero(~valid)

    def _scan_dropped(self) -> np.ndarray:
        dropped, start = [], 0
        for rb in self.file.iter_batches(batch_size=self.batch_rows, columns=self.columns):
            dropped.append(start + self._valid_part(rb, start)[1])
            start += rb.num_rows
        return np.concatenate(dropped) if dropped else np.zeros(0, dtype=np.int64)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        # Parquet batch size is fixed at open time; re-chunk to the caller's size.
        if self.on_invalid == "drop":  # starts count valid rows only
            start = 0
            for _, mat in self._raw_batches():
                for off in range(0, len(mat), batch_size):
                    yield start + off, mat[off : off + batch_size]
                start += len(mat)
            return
        for start, mat in self._raw_batches():
            if mat.shape[1] != self.dim:
                raise InputError(
                    f"{self.path}: vectors at row {start} have {mat.shape[1]} values, expected {self.dim}"
                )
            bad = _invalid_rows(mat)
            if len(bad):
                raise InputError(f"{self.path}: NaN or inf in row(s) {describe_rows(start + bad)}")
            for off in range(0, len(mat), batch_size):
                yield start + off, mat[off : off + batch_size]

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        pos = 0
        for start, mat in self.iter_batches(self.batch_rows):
            end = start + len(mat)
            lo, hi = np.searchsorted(rows, [start, end])
            if hi > lo:
                out[pos : pos + hi - lo] = mat[rows[lo:hi] - start]
                pos += hi - lo
            if pos == len(rows):
                break
        return out


def as_source(
    x: Any, *, on_invalid: OnInvalid = "raise", name: str | None = None
) -> EmbeddingSource:
    """Wrap an array, a memory map, a `.npy` path or an existing source."""
    if isinstance(x, ParquetSource) and on_invalid == "drop" and x.on_invalid == "raise":
        # The estimator asked to drop invalid rows: honour it for Parquet input too.
        return ParquetSource(x.path, x.columns, batch_rows=x.batch_rows, on_invalid="drop")
    if isinstance(x, EmbeddingSource):
        return x
    if isinstance(x, str | os.PathLike):
        path = Path(x)
        if path.suffix == ".npy":
            if not path.is_file():
                raise InputError(f".npy file not found: {path}")
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as e:
                raise InputError(f"{path}: not a numeric .npy file ({e})") from e
            return ArraySource(arr, name=str(path), on_invalid=on_invalid)
        raise InputError(
            f"{path}: pass a .npy file, an array, or ParquetSource(path, column) for Parquet input"
        )
    return ArraySource(x, name=name or "X", on_invalid=on_invalid)
