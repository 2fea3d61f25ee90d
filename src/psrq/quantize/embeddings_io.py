"""The CLI's embedding inputs, gathered into `ModalityEmbeddings` per modality.

The Parquet layouts (``embeddings/<modality>.parquet``, the ``emb_<modality>`` columns of
items.parquet) and their rules, the null rule included, belong to `psrq.formats.embeddings`;
this module adds what only the quantize CLI reads: one ``.npy`` matrix per modality plus an
item-ID file (``.txt`` one ID per line, ``.parquet`` with an ``item_id`` column, or a ``.npy``
array of strings) listing its rows in order, and the ``--items`` / ``--input`` / ``--ids``
assembly (`load_modalities`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from psrq.errors import InputError
from psrq.formats.embeddings import (
    ITEM_ID_COLUMN,
    ModalityEmbeddings,
    check_modality_name,
    from_arrays,
    ids_to_strings,
    items_modalities,
    read_embedding_parquet,
    read_items_parquet,
)
from psrq.formats.ids import describe, read_parquet


def read_id_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Item IDs, one per row of a matching .npy: a .txt (one per line), .parquet (item_id) or .npy of str."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"item-ID file not found: {path}")
    if path.suffix == ".parquet":
        return ids_to_strings(
            read_parquet(path, [ITEM_ID_COLUMN]).column(ITEM_ID_COLUMN), source=str(path)
        )
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: cannot read item IDs ({e}); save them as a str array") from e
        return ids_to_strings(arr.reshape(-1), source=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[-1] == "":
        lines = lines[:-1]
    empty = [i for i, s in enumerate(lines) if not s.strip()]
    if empty:
        raise InputError(f"{path}: empty item ID on line(s) {describe([i + 1 for i in empty])}")
    return np.array([s.strip() for s in lines], dtype=object)


def read_npy(
    path: str | os.PathLike[str], ids_path: str | os.PathLike[str], modality: str
) -> ModalityEmbeddings:
    """One modality from a .npy matrix [n, d] and an item-ID file listing its n rows in order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f".npy file not found: {path}")
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: not a numeric .npy file ({e})") from e
    ids = read_id_file(ids_path)
    if X.ndim == 2 and X.shape[0] != len(ids):
        raise InputError(f"{path} has {X.shape[0]} rows but {ids_path} lists {len(ids)} item IDs")
    return from_arrays(modality, ids, X, source=str(path))


def parse_assignment(spec: str, *, option: str) -> tuple[str, str]:
    """'name=value' -> (name, value); a clear error otherwise."""
    name, sep, value = spec.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise InputError(
            f"{option} expects NAME=VALUE (e.g. text=embeddings/text.parquet), got {spec!r}"
        )
    return name.strip(), value.strip()


def load_modalities(
    *,
    items: str | os.PathLike[str] | None = None,
    inputs: list[str] | tuple[str, ...] = (),
    ids: list[str] | tuple[str, ...] = (),
    modalities: list[str] | None = None,
    require_all: bool = True,
) -> dict[str, ModalityEmbeddings]:
    """Gather modalities from the CLI's sources.

    items: an items.parquet with ``emb_<modality>`` columns; inputs: ``modality=path`` with path a
    .parquet (item_id + embedding) or .npy; ids: the item-ID file for .npy inputs, either
    ``modality=path`` or one bare path shared by all .npy inputs. `modalities` restricts and
    orders the result; with ``require_all=False`` a wanted modality may be absent (new items
    without audio), but an input that is not among `modalities` is still an error.
    """
    found: dict[str, ModalityEmbeddings] = {}
    if items is not None:
        item_modalities = None
        if modalities is not None:  # only the wanted ones the items file has and --input does not
            taken = _input_names(inputs)
            item_modalities = [
                m for m in items_modalities(items) if m in modalities and m not in taken
            ]
        if item_modalities != []:
            found.update(read_items_parquet(items, item_modalities))
    id_files = _id_files(ids)
    for spec in inputs:
        modality, path = parse_assignment(spec, option="--input")
        check_modality_name(modality, where=f"--input {spec}")
        if modality in found:
            raise InputError(
                f"modality {modality!r} is given twice ({found[modality].source} and {path})"
            )
        found[modality] = _read_one(modality, Path(path), id_files)
    if not found:
        raise InputError(
            "no embeddings given: pass --items items.parquet or --input text=embeddings/text.parquet"
        )
    if modalities is not None:
        absent = [m for m in modalities if m not in found]
        if absent and require_all:
            raise InputError(f"modality {absent} requested but not in the inputs ({sorted(found)})")
        extra = [m for m in found if m not in modalities]
        if extra:
            raise InputError(f"modality {extra} is not one of {modalities}")
        found = {m: found[m] for m in modalities if m in found}
    if not found:
        raise InputError(f"none of the modalities {modalities} is in the inputs")
    return found


def _input_names(inputs: list[str] | tuple[str, ...]) -> set[str]:
    return {parse_assignment(s, option="--input")[0] for s in inputs}


def _id_files(ids: list[str] | tuple[str, ...]) -> dict[str | None, str]:
    out: dict[str | None, str] = {}
    for spec in ids:
        if "=" in spec:
            modality, path = parse_assignment(spec, option="--ids")
            out[modality] = path
        else:
            out[None] = spec
    return out


def _read_one(modality: str, path: Path, id_files: dict[str | None, str]) -> ModalityEmbeddings:
    if path.suffix == ".npy":
        ids_path = id_files.get(modality, id_files.get(None))
        if ids_path is None:
            raise InputError(
                f"{path}: a .npy input needs its item IDs: add --ids {modality}=ids.txt (one ID per row)"
            )
        return read_npy(path, ids_path, modality)
    if path.suffix == ".parquet":
        return read_embedding_parquet(path, modality)
    raise InputError(
        f"{path}: unsupported input; give a .parquet (item_id + embedding) or a .npy file"
    )
