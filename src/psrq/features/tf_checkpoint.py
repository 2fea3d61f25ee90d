"""Read a TensorFlow (v1 or v2) checkpoint with numpy only: no TensorFlow, no protobuf library.

A checkpoint "tensor bundle" is two files next to each other:

* ``<prefix>.index``: an SSTable (LevelDB table format). Its keys are tensor names; each value is
  a serialised ``BundleEntryProto`` (dtype, shape, shard id, byte offset, byte size, crc32c).
  The empty key holds a ``BundleHeaderProto`` (number of shards, endianness), which we skip.
* ``<prefix>.data-00000-of-0000N``: the raw little-endian tensor bytes, addressed by the entries.

Only the subset of both formats that TensorFlow actually writes for bundles is handled: blocks
without compression, plain dense tensors (no partitioned "slices"). Anything else raises
`ArtifactError` naming the file, rather than returning wrong numbers.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psrq.errors import ArtifactError

# LevelDB table footer: two block handles padded to 40 bytes, then this 8-byte magic number.
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes crc after every block

# tensorflow/core/framework/types.proto DataType -> numpy dtype (the ones checkpoints hold).
_TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("bool"),
    19: np.dtype("<f2"),
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data shard(s)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Protobuf wire format -> [(field number, wire type, value)]; enough for BundleEntryProto."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            fields.append((number, wire, value))
        elif wire == 1:
            fields.append((number, wire, buf[pos : pos + 8]))
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            fields.append((number, wire, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            fields.append((number, wire, buf[pos : pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return fields


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1)."""
    dims: list[int] = []
    for number, _, value in _proto_fields(buf):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for dnum, _, dval in _proto_fields(value):
                if dnum == 1 and isinstance(dval, int):
                    size = dval
            dims.append(size)
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7."""
    dtype_code, shape, shard_id, offset, size = 0, (), 0, 0, 0
    for number, _, value in _proto_fields(buf):
        if number == 1 and isinstance(value, int):
            dtype_code = value
        elif number == 2 and isinstance(value, bytes):
            shape = _parse_shape(value)
        elif number == 3 and isinstance(value, int):
            shard_id = value
        elif number == 4 and isinstance(value, int):
            offset = value
        elif number == 5 and isinstance(value, int):
            size = value
        elif number == 7:
            raise ValueError(f"tensor {name!r} is partitioned (slices); not supported")
    if dtype_code not in _TF_DTYPES:
        raise ValueError(f"tensor {name!r} has unsupported TF dtype code {dtype_code}")
    return TensorEntry(name, _TF_DTYPES[dtype_code], shape, shard_id, offset, size)


def _block(data: bytes, offset: int, size: int) -> bytes:
    if data[offset + size] != 0:  # trailer byte 0 = kNoCompression
        raise ValueError("compressed SSTable blocks are not supported")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an SSTable block (keys are prefix-compressed)."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_index(index_path: str | os.PathLike[str]) -> dict[str, TensorEntry]:
    """Parse a ``.index`` file into {tensor name: TensorEntry}."""
    path = Path(index_path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint index not found: {path}")
    data = path.read_bytes()
    try:
        if len(data) < _FOOTER_SIZE:
            raise ValueError("file is shorter than an SSTable footer")
        footer = data[-_FOOTER_SIZE:]
        (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
        if magic != _TABLE_MAGIC:
            raise ValueError("not an SSTable (bad magic number)")
        _, pos = _varint(footer, 0)  # metaindex offset (unused)
        _, pos = _varint(footer, pos)  # metaindex size
        index_offset, pos = _varint(footer, pos)
        index_size, _ = _varint(footer, pos)
        entries: dict[str, TensorEntry] = {}
        for _, handle in _block_entries(_block(data, index_offset, index_size)):
            block_offset, hpos = _varint(handle, 0)
            block_size, _ = _varint(handle, hpos)
            for key, value in _block_entries(_block(data, block_offset, block_size)):
                if key:  # the empty key is the BundleHeaderProto
                    name = key.decode("utf-8")
                    entries[name] = _parse_entry(name, value)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read TensorFlow checkpoint index ({e})") from e
    return entries


def read_checkpoint(prefix: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load every tensor of the bundle at `prefix` (``prefix.index`` + ``prefix.data-*``).

    musicnn's bundles have an empty prefix name inside their folder, so
    ``read_checkpoint(folder / "")`` reads ``folder/.index``.
    """
    prefix_str = os.fspath(prefix)
    if os.path.isdir(prefix_str):
        prefix_str = os.path.join(prefix_str, "")
    entries = read_index(prefix_str + ".index")
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, entry in entries.items():
        if entry.shard_id not in shards:
            folder, stem = os.path.split(prefix_str)
            pattern = f"{stem}.data-{entry.shard_id:05d}-of-*"
            found = sorted(Path(folder or ".").glob(pattern))
            if not found:
                raise ArtifactError(
                    f"checkpoint data shard not found: {prefix_str}.data-{entry.shard_id:05d}-of-*"
                )
            shard_path = found[0]
            shards[entry.shard_id] = shard_path.read_bytes()
        raw = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        expected = int(np.prod(entry.shape, dtype=np.int64)) * entry.dtype.itemsize
        if len(raw) != expected:
            raise ArtifactError(
                f"{prefix_str}: tensor {name!r} has {len(raw)} bytes, shape {entry.shape} needs {expected}"
            )
        tensors[name] = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()
    return tensors
