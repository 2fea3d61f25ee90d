"""Reading the published text formats: delimited files with a stated encoding, JSON lines.

Encodings are always explicit (Last.fm's tags.dat is latin-1, everything else UTF-8); a file
that does not decode raises an InputError naming the file, line and byte, never mojibake.
"""

from __future__ import annotations

import ast
import codecs
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from psrq.errors import InputError

from .schema import require_columns, require_file


def _decode_error(path: Path, raw: bytes, encoding: str, err: UnicodeDecodeError) -> InputError:
    line = raw.count(b"\n", 0, err.start) + 1
    return InputError(
        f"{path}: line {line} is not valid {encoding} (byte {raw[err.start : err.start + 1]!r} at offset "
        f"{err.start}); save the file as {encoding} or pass the right encoding"
    )


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(path, raw, encoding, e) from None


def read_delimited(
    path: str | Path,
    *,
    columns: list[str] | tuple[str, ...],
    delimiter: str = "\t",
    encoding: str = "utf-8",
    string_columns: list[str] | tuple[str, ...] = (),
    what: str = "file",
) -> pa.Table:
    """Read a delimited text file with a header line into a pyarrow Table (no quoting).

    `columns` must be present in the header; `string_columns` are read as strings whatever
    they look like (IDs stay IDs). Raises InputError on missing file/columns, bad encoding or
    ragged rows, naming the file and line.
    """
    p = require_file(path, what)
    raw = p.read_bytes()
    if p.suffix == ".gz":
        raw = gzip.decompress(raw)
    is_utf8 = codecs.lookup(encoding).name == "utf-8"
    if (
        not is_utf8
    ):  # re-encode once; UTF-8 input goes to pyarrow as is (it validates strings itself)
        raw = _decode(p, raw, encoding).encode("utf-8")
    if not raw.strip():
        raise InputError(f"{p}: the file is empty (expected a header with {', '.join(columns)})")
    header = raw.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace").split(delimiter)
    column_types = {c: pa.string() for c in string_columns if c in header}
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(encoding="utf-8", block_size=1 << 26),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=False, newlines_in_values=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as e:
        if is_utf8:
            _decode(p, raw, encoding)  # names the line of a bad byte, if that is the problem
        raise InputError(f"{p}: cannot parse as {delimiter!r}-separated text: {e}") from None
    require_columns(table, columns, str(p))
    return table


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="strict")


def iter_json_lines(
    path: str | Path, *, what: str = "file", allow_python_literals: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, record) of a JSON-lines file (optionally gzipped).

    The 2014 Amazon metadata files hold Python dict literals (single quotes), not JSON:
    `allow_python_literals` parses those with ast.literal_eval (never eval).
    """
    p = require_file(path, what)
    with _open_text(p) as f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{p}: line {lineno + 1} is not valid UTF-8 ({e.reason})"
                ) from None
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            yield lineno, _parse_record(line, p, lineno, allow_python_literals)


def _parse_record(
    line: str, path: Path, lineno: int, allow_python_literals: bool
) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        if not allow_python_literals:
            raise InputError(f"{path}: line {lineno} is not valid JSON: {e.msg}") from None
        try:
            rec = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError) as e2:
            raise InputError(
                f"{path}: line {lineno} is neither JSON nor a Python dict literal: {e2}"
            ) from None
    if not isinstance(rec, dict):
        raise InputError(f"{path}: line {lineno} is a {type(rec).__name__}, expected an object")
    return rec
