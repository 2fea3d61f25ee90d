"""Multimodal semantic IDs: one codebook per modality plus a modal-joint codebook.

    from psrq import MultimodalQuantizer
    mq = MultimodalQuantizer(method="PSRQ", params={"codebook_size": 128}, seed=0)
    sids = mq.fit_transform({"text": (text_ids, X_text), "audio": (audio_ids, X_audio)})
    sids.codes["text"], sids.codes["audio"], sids.codes["joint"]   # int32 [n_items, n_levels]
    sids.write("sids.parquet"); mq.save("model_dir")
    new = MultimodalQuantizer.load("model_dir").transform(new_inputs, disambiguate=True)

What it computes (method.md, "Stage 1"): modal-specific IDs are a quantizer fitted on each
modality alone; the modal-joint ID is a quantizer fitted on the concatenation
``[w_t * N_t(X_t) || w_a * N_a(X_a) || ...]`` of the normalised, weighted modality blocks.
Every item gets one code tuple per codebook (``text``, ``audio``, ..., ``joint``).

Normalisation (``normalize``; one value for all modalities or a dict per modality), learned on
the training items and applied before quantizing *and* before concatenation, so that no
modality dominates the joint ID just because its vectors are longer:

- ``"l2"`` (default): each vector divided by its L2 norm (block norm 1);
- ``"standard"``: per dimension ``(x - mean) / std``, then divided by ``sqrt(dim)`` so that the
  block's expected squared norm is 1 too, whatever its dimension (a plain z-score would let a
  768-d modality outweigh a 200-d one in the joint distance 4:1);
- ``"none"``: used as given.

``weights`` multiplies each block in the joint concatenation (default 1.0 each); a weight of 2
makes that modality count 4x in squared distance.

Missing modalities (an item absent from one modality's input) never crash:

- the item gets null codes for that modality's codebook;
- its joint ID is computed with the missing block *imputed by the modality's training mean
  after normalisation* (times its weight): the least informative value, so the joint code is
  decided by the modalities the item does have;
- the joint codebook is *fitted* on the items that have every modality only (imputed rows would
  pull centroids towards the mean); if no training item has all modalities, fit raises;
- `SemanticIDs.has_modality` (and the ``missing_modalities`` column of sids.parquet) records
  which modalities each item lacked;
- an item with no modality at all (possible only when `transform` is given an explicit
  ``item_ids`` catalogue) gets null codes in every codebook, joint included: imputing every
  block would give every such item the same "average item" ID, which is worse than none.

New items are encoded with the frozen codebooks (`transform`); an item gets the same codes
whether it was in the training set or not. Optional disambiguation suffixes
(`psrq.quantize.collisions`) number the items sharing a tuple in item-ID order; for items
encoded after training, suffixes continue after those taken by training items (the model
directory stores the training IDs and the tuple -> next free suffix table), and a training
item encoded again keeps its training suffix as long as its codes are unchanged.

SYNTHETIC inputs (Parquet metadata ``psrq.synthetic = true``) label the model and every
sids.parquet it writes with the same key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from psrq.artifacts import (
    fingerprint_array,
    fingerprint_obj,
    read_model_dir,
    write_model_dir,
    write_parquet,
)
from psrq.errors import ArtifactError, ConfigError, InputError, NotFittedError
from psrq.quantize.collisions import SuffixTable, assign_suffixes, collision_stats, id_ranks
from psrq.quantize.embeddings_io import (
    ModalityEmbeddings,
    check_modality_name,
    check_unique_ids,
    from_arrays,
    ids_to_strings,
)
from psrq.quantize.registry import QUANTIZERS, resolve_method

JOINT = "joint"
NORMALIZATIONS = ("l2", "standard", "none")
_EPS = 1e-12


# ---- normalisation ------------------------------------------------------------------------------
@dataclass
class Normalizer:
    """Per-modality normalisation learned on training rows.

    mean / scale: float32 [dim] for "standard" (empty otherwise); block_mean: float32 [dim], the
    mean of the normalised training rows (what a missing block is imputed with).
    """

    mode: str
    mean: np.ndarray
    scale: np.ndarray
    block_mean: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, mode: str) -> Normalizer:
        empty = np.zeros(0, dtype=np.float32)
        norm = cls(mode, empty, empty, empty)
        if mode == "standard":
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
            std[std < _EPS] = 1.0  # constant dimensions are centred, not blown up
            norm.mean = mean.astype(np.float32)
            norm.scale = (std * np.sqrt(X.shape[1])).astype(np.float32)
        norm.block_mean = norm.apply(X).mean(axis=0, dtype=np.float64).astype(np.float32)
        return norm

    def apply(self, X: np.ndarray) -> np.ndarray:
        """float32 [n, dim] -> normalised float32 [n, dim] (a new array)."""
        if self.mode == "l2":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            return (X / np.maximum(norms, _EPS)).astype(np.float32, copy=False)
        if self.mode == "standard":
            return ((X - self.mean) / self.scale).astype(np.float32, copy=False)
        return np.array(X, dtype=np.float32, copy=True)


# ---- the result -----------------------------------------------------------------------------------
@dataclass
class SemanticIDs:
    """Semantic IDs of a set of items, one code tuple per codebook.

    item_ids: object array of str [n]; modalities: the modality names, in model order;
    has_modality: bool [n, n_modalities]; codes[codebook]: int32 [n, n_levels] (rows where
    `present[codebook]` is False hold 0 and mean "null"); suffixes[codebook]: int32 [n]
    (-1 where absent), or None when not disambiguated.
    """

    item_ids: np.ndarray
    modalities: list[str]
    has_modality: np.ndarray
    codes: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    suffixes: dict[str, np.ndarray] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def codebooks(self) -> list[str]:
        return list(self.codes)

    def __len__(self) -> int:
        return len(self.item_ids)

    def collisions(self) -> dict[str, dict[str, Any]]:
        """Per codebook: collision_stats over the items that have codes (see collisions.py)."""
        out = {}
        for cb, codes in self.codes.items():
            stats = collision_stats(codes[self.present[cb]])
            if self.suffixes is not None:
                pres = self.present[cb]
                full = np.concatenate([codes[pres], self.suffixes[cb][pres, None]], axis=1)
                stats["unique_with_suffix"] = collision_stats(full)["colliding_items"] == 0
            out[cb] = stats
        return out

    def missing_modalities(self) -> list[list[str]]:
        names = np.array(self.modalities, dtype=object)
        return [names[~row].tolist() for row in self.has_modality]

    def without_suffixes(self) -> SemanticIDs:
        return replace(self, suffixes=None)

    # ---- Parquet ------------------------------------------------------------------------------
    def to_table(self) -> Any:
        """pyarrow Table in the sids.parquet schema of docs/conventions.md (+ missing_modalities)."""
        import pyarrow as pa

        columns: dict[str, Any] = {"item_id": pa.array(self.item_ids, type=pa.string())}
        for cb, codes in self.codes.items():
            n_levels = codes.shape[1]
            values = pa.array(
                np.ascontiguousarray(codes, dtype=np.int32).reshape(-1), type=pa.int32()
            )
            absent = pa.array(~self.present[cb])
            columns[f"sid_{cb}"] = pa.FixedSizeListArray.from_arrays(values, n_levels, mask=absent)
            if self.suffixes is not None:
                columns[f"sid_{cb}_suffix"] = pa.array(
                    self.suffixes[cb], type=pa.int32(), mask=~self.present[cb]
                )
        missing = ~self.has_modality
        offsets = np.concatenate([[0], np.cumsum(missing.sum(axis=1))]).astype(np.int32)
        names = np.array(self.modalities, dtype=object)[np.nonzero(missing)[1]]
        columns["missing_modalities"] = pa.ListArray.from_arrays(
            pa.array(offsets, type=pa.int32()), pa.array(names.tolist(), type=pa.string())
        )
        meta = {
            "psrq.content": "semantic IDs",
            "psrq.codebooks": json.dumps(self.codebooks),
            "psrq.modalities": json.dumps(self.modalities),
            **self.metadata,
        }
        return pa.table(columns).replace_schema_metadata({k: str(v) for k, v in meta.items()})

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write sids.parquet atomically."""
        write_parquet(path, self.to_table())
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SemanticIDs:
        """Read a sids.parquet (ours, or any file with item_id + sid_<codebook> columns)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise InputError(f"semantic-ID file not found: {path}")
        try:
            table = pq.read_table(path)
        except Exception as e:  # not Parquet, truncated, ...
            raise InputError(f"{path}: not a readable Parquet file ({e})") from e
        return cls.from_table(table, source=str(path))

    @classmethod
    def from_table(cls, table: Any, *, source: str = "table") -> SemanticIDs:
        import pyarrow as pa

        if "item_id" not in table.column_names:
            raise InputError(f"{source}: no item_id column")
        ids = ids_to_strings(table.column("item_id"), source=source)
        check_unique_ids(ids, source=source)
        cbs = [
            c[4:] for c in table.column_names if c.startswith("sid_") and not c.endswith("_suffix")
        ]
        if not cbs:
            raise InputError(f"{source}: no sid_<codebook> column (columns: {table.column_names})")
        codes, present = {}, {}
        for cb in cbs:
            codes[cb], present[cb] = _codes_from_column(
                table.column(f"sid_{cb}"), source, f"sid_{cb}"
            )
        suffixes = None
        if all(f"sid_{cb}_suffix" in table.column_names for cb in cbs):
            suffixes = {
                cb: table.column(f"sid_{cb}_suffix").fill_null(-1).to_numpy().astype(np.int32)
                for cb in cbs
            }
        meta = {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in (table.schema.metadata or {}).items()
        }
        modalities = [c for c in cbs if c != JOINT]
        if "psrq.modalities" in meta:
            try:
                modalities = json.loads(meta["psrq.modalities"])
            except ValueError:
                modalities = None
            if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
                raise InputError(
                    f"{source}: metadata psrq.modalities must be a JSON list of names, got {meta['psrq.modalities']!r}"
                )
        if "missing_modalities" in table.column_names:
            col = table.column("missing_modalities")
            if not (
                (pa.types.is_list(col.type) or pa.types.is_large_list(col.type))
                and pa.types.is_string(col.type.value_type)
            ):
                raise InputError(
                    f"{source}: column 'missing_modalities' is {col.type}, expected a list of modality names"
                )
            has = _has_from_missing(col, modalities)
        else:
            unknown = [m for m in modalities if m not in present]
            if unknown:
                raise InputError(
                    f"{source}: metadata names modality {unknown[0]!r} but there is no sid_{unknown[0]} column"
                )
            has = (
                np.stack([present[m] for m in modalities], axis=1)
                if modalities
                else np.ones((len(ids), 0), bool)
            )
        has = has.reshape(len(ids), len(modalities))
        extra = {
            k: v
            for k, v in meta.items()
            if k.startswith("psrq.") and k not in ("psrq.codebooks", "psrq.modalities")
        }
        return cls(ids, modalities, has, codes, present, suffixes, extra)


def _has_from_missing(col: Any, modalities: list[str]) -> np.ndarray:
    """bool [n, n_modalities] from a list<string> column naming each row's missing modalities."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=pa.list_(pa.string()))
    has = np.ones((len(col), len(modalities)), dtype=bool)
    names = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    for j, m in enumerate(modalities):
        has[parents[names == m], j] = False
    return has


def _codes_from_column(col: Any, source: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(int32 [n, n_levels], present bool [n]) from a (fixed-size) list column with nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"{source}: column {name!r} is {t}, expected a list of int codes")
    if not (pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type)):
        raise InputError(f"{source}: column {name!r} is {t}, expected a list of int codes")
    present = pc.is_valid(col).to_numpy(zero_copy_only=False).astype(bool)
    sub = col.filter(pa.array(present))
    if len(sub) and sub.flatten().null_count:
        raise InputError(
            f"{source}: column {name!r} has a null code inside a code list (a missing ID is a null list)"
        )
    flat = sub.flatten().to_numpy(zero_copy_only=False) if len(sub) else np.zeros(0)
    n_levels = (
        int(t.list_size)
        if pa.types.is_fixed_size_list(t)
        else (len(flat) // len(sub) if len(sub) else 0)
    )
    if len(sub) and len(flat) != n_levels * len(sub):
        raise InputError(f"{source}: column {name!r} has code tuples of different lengths")
    codes = np.zeros((len(col), n_levels), dtype=np.int32)
    codes[present] = np.asarray(flat, dtype=np.int32).reshape(len(sub), n_levels)
    return codes, present


# ---- aligning modalities by item ID ----------------------------------------------------------------
@dataclass
class _Aligned:
    """Modalities aligned on one item list: rows[m][i] is the item index of row i of modality m."""

    item_ids: np.ndarray
    modalities: dict[str, ModalityEmbeddings]
    rows: dict[str, np.ndarray]
    has: np.ndarray  # bool [n_items, n_model_modalities]


def _coerce_inputs(inputs: Mapping[str, Any]) -> dict[str, ModalityEmbeddings]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError(
            "inputs must be a non-empty dict {modality: ModalityEmbeddings or (item_ids, X)}"
        )
    out: dict[str, ModalityEmbeddings] = {}
    for name, value in inputs.items():
        check_modality_name(name)
        if isinstance(value, ModalityEmbeddings):
            if value.modality != name:
                raise InputError(f"inputs[{name!r}] holds the {value.modality!r} modality")
            out[name] = value
        elif isinstance(value, tuple) and len(value) == 2:
            out[name] = from_arrays(name, value[0], value[1], source=f"inputs[{name!r}]")
        else:
            raise InputError(
                f"inputs[{name!r}] must be ModalityEmbeddings or a tuple (item_ids, X)"
            )
    return out


def _align(
    mods: dict[str, ModalityEmbeddings], model_modalities: list[str], item_ids: Any = None
) -> _Aligned:
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = {m: pa.array(e.item_ids, type=pa.string()) for m, e in mods.items()}
    if item_ids is None:
        # First-appearance order over the modalities in model order: deterministic, and it keeps
        # the caller's row order when every modality lists the same items.
        union = pc.unique(
            pa.chunked_array([arrays[m] for m in model_modalities if m in arrays], type=pa.string())
        )
    else:
        ids = ids_to_strings(item_ids, source="item_ids")
        check_unique_ids(ids, source="item_ids")
        union = pa.array(ids, type=pa.string())
    rows = {}
    for m, arr in arrays.items():
        index = pc.index_in(arr, value_set=union)
        if index.null_count:
            lost = mods[m].item_ids[pc.is_null(index).to_numpy(zero_copy_only=False)]
            shown = ", ".join(repr(v) for v in lost[:10].tolist())
            raise InputError(f"{mods[m].source}: {len(lost)} {m} item(s) not in item_ids: {shown}")
        rows[m] = index.to_numpy(zero_copy_only=False).astype(np.int64)
    has = np.zeros((len(union), len(model_modalities)), dtype=bool)
    for j, m in enumerate(model_modalities):
        if m in rows:
            has[rows[m], j] = True
    return _Aligned(union.to_numpy(zero_copy_only=False).astype(object), mods, rows, has)


# ---- the estimator ---------------------------------------------------------------------------------
class MultimodalQuantizer(BaseEstimator):
    """Modal-specific + modal-joint semantic IDs (see the module docstring for every rule).

    A scikit-learn estimator like the quantizers (`get_params`, `set_params`, `clone`); its
    parameters are checked in one hook, `_check_params(modalities)`, before any codebook is fitted.

    Parameters (keyword-only):
      method: quantizer for every codebook ("PSRQ", "RQKMeans", "VQ", "PQ", "RQVAE"; any case).
      params: keyword arguments for every codebook's quantizer (e.g. {"codebook_size": 128}).
        Anything not given takes the quantizer's default (PSRQ: 3 levels).
      codebook_params: per-codebook overrides {"text": {...}, "joint": {"method": "RQKMeans"}};
        the key "method" switches that codebook's quantizer (which then ignores the shared
        params it does not have, e.g. prefix_weight for RQKMeans).
      normalize: "l2" | "standard" | "none", or a dict {modality: mode} (unlisted modalities: "l2").
      weights: {modality: weight > 0} for the joint concatenation (default 1.0 each).
      joint: build the modal-joint codebook (only when there are >= 2 modalities).
      seed: seed passed to every codebook's quantizer (unless its params set one).
    """

    kind = "MultimodalQuantizer"

    def __init__(
        self,
        *,
        method: str = "PSRQ",
        params: dict[str, Any] | None = None,
        codebook_params: dict[str, dict[str, Any]] | None = None,
        normalize: str | dict[str, str] = "l2",
        weights: dict[str, float] | None = None,
        joint: bool = True,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.params = params
        self.codebook_params = codebook_params
        self.normalize = normalize
        self.weights = weights
        self.joint = joint
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"MultimodalQuantizer({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
        )

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "quantizers_")

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                "this MultimodalQuantizer is not fitted yet: call fit(inputs) or MultimodalQuantizer.load(path)"
            )

    @property
    def codebooks_(self) -> list[str]:
        self._check_fitted()
        return list(self.quantizers_)

    # ---- configuration ------------------------------------------------------------------------
    def _mode(self, modality: str) -> str:
        mode = (
            self.normalize.get(modality, "l2")
            if isinstance(self.normalize, dict)
            else self.normalize
        )
        if mode not in NORMALIZATIONS:
            raise ConfigError(
                f"normalize for {modality!r} is {mode!r}; choose one of {', '.join(NORMALIZATIONS)}"
            )
        return mode

    def _weight(self, modality: str) -> float:
        return float((self.weights or {}).get(modality, 1.0))

    def _codebooks(self, modalities: list[str]) -> list[str]:
        """The codebooks fit builds: one per modality, plus joint when asked and possible."""
        return (
            [*modalities, JOINT] if bool(self.joint) and len(modalities) >= 2 else list(modalities)
        )

    def _check_params(self, modalities: list[str]) -> None:
        """The one parameter check, run by fit before any codebook is fitted.

        Checks the options against the modalities given, then every codebook's quantizer
        parameters (so a bad joint setting fails before the modality codebooks are trained).
        """
        codebooks = [*modalities, JOINT]
        for option, keys in (
            ("codebook_params", self.codebook_params or {}),
            ("weights", self.weights or {}),
            ("normalize", self.normalize if isinstance(self.normalize, dict) else {}),
        ):
            allowed = codebooks if option == "codebook_params" else modalities
            unknown = [k for k in keys if k not in allowed]
            if unknown:
                raise ConfigError(
                    f"{option} names {unknown}, which is not among the codebooks {allowed}"
                )
        for m, w in (self.weights or {}).items():
            if not (isinstance(w, int | float) and np.isfinite(w) and w > 0):
                raise ConfigError(f"weights[{m!r}] must be a number > 0, got {w!r}")
        for m in modalities:
            self._mode(m)
        for cb in self._codebooks(modalities):
            try:
                self.make_quantizer(cb)._check_params()
            except InputError as e:
                raise InputError(f"codebook {cb!r}: {e}") from e

    def make_quantizer(self, codebook: str) -> Any:
        """A fresh, unfitted quantizer for one codebook (method + params + its overrides)."""
        override = dict((self.codebook_params or {}).get(codebook, {}))
        kind = resolve_method(override.pop("method", self.method))
        cls = QUANTIZERS[kind]
        accepted = cls._param_names()
        shared = dict(self.params or {})
        if kind != resolve_method(self.method):
            # A codebook switched to another quantizer keeps only the shared params that exist
            # there (VQ has no n_levels, RQKMeans no prefix_weight); its own overrides must fit.
            shared = {k: v for k, v in shared.items() if k in accepted}
        params = {**shared, **override}
        unknown = [k for k in params if k not in accepted]
        if unknown:
            raise ConfigError(
                f"codebook {codebook!r}: {kind} has no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(accepted)}"
            )
        if "seed" in accepted:
            params.setdefault("seed", self.seed)
        return cls(**params)

    # ---- fitting ------------------------------------------------------------------------------
    def fit(self, inputs: Mapping[str, Any]) -> MultimodalQuantizer:
        """Learn normalisations and every codebook from {modality: ModalityEmbeddings | (ids, X)}."""
        self._fit(inputs)
        return self

    def fit_transform(
        self, inputs: Mapping[str, Any], *, disambiguate: bool = False
    ) -> SemanticIDs:
        """fit, then the training items' IDs (computed once, during fit)."""
        sids = self._fit(inputs)
        return replace(sids) if disambiguate else sids.without_suffixes()

    def _fit(self, inputs: Mapping[str, Any]) -> SemanticIDs:
        from tqdm.auto import tqdm

        mods = _coerce_inputs(inputs)
        modalities = list(mods)
        self._check_params(modalities)
        aligned = _align(mods, modalities)
        normalizers = {m: Normalizer.fit(mods[m].X, self._mode(m)) for m in modalities}
        normalized = {m: normalizers[m].apply(mods[m].X) for m in modalities}
        codebooks = self._codebooks(modalities)
        quantizers = {}
        for cb in tqdm(codebooks, desc="fitting codebooks", unit="codebook", disable=None):
            q = self.make_quantizer(cb)
            if cb == JOINT:
                complete = np.flatnonzero(aligned.has.all(axis=1))
                if len(complete) == 0:
                    raise InputError(
                        f"no item has every modality ({', '.join(modalities)}), so the joint codebook "
                        "cannot be fitted; pass joint=False (--no-joint) or add items with all modalities"
                    )
                X = self._joint_matrix(aligned, normalized, normalizers, complete, modalities)
            else:
                X = normalized[cb]
            try:
                q.fit(X)
            except InputError as e:
                raise InputError(f"codebook {cb!r}: {e}") from e
            quantizers[cb] = q
        del X  # the joint training matrix is not needed while encoding
        self.modalities_ = modalities
        self.dims_ = {m: mods[m].dim for m in modalities}
        self.normalizers_ = normalizers
        self.quantizers_ = quantizers
        self.n_items_ = len(aligned.item_ids)
        self.synthetic_ = any(e.synthetic for e in mods.values())
        self.input_fingerprint_ = fingerprint_obj(
            {m: [fingerprint_array(mods[m].X), _sample_ids(mods[m].item_ids)] for m in modalities}
        )
        sids = self._encode(aligned, normalized)
        rank = id_ranks(sids.item_ids)
        sids.suffixes = {
            cb: _suffixes_for(sids, cb, taken=None, id_rank=rank) for cb in sids.codebooks
        }
        self.train_sids_ = sids
        self.suffix_tables_ = {
            cb: SuffixTable.from_codes(sids.codes[cb][sids.present[cb]]) for cb in sids.codebooks
        }
        return sids

    def _joint_matrix(
        self,
        aligned: _Aligned,
        normalized: dict[str, np.ndarray],
        normalizers: dict[str, Normalizer],
        items: np.ndarray,
        modalities: list[str],
    ) -> np.ndarray:
        """float32 [len(items), sum of dims]: weighted normalised blocks, missing ones imputed."""
        dims = [normalizers[m].block_mean.shape[0] for m in modalities]
        out = np.empty((len(items), sum(dims)), dtype=np.float32)
        position = np.full(len(aligned.item_ids), -1, dtype=np.int64)
        position[items] = np.arange(len(items))
        start = 0
        for m, d in zip(modalities, dims, strict=True):
            w = self._weight(m)
            block = out[:, start : start + d]
            block[:] = w * normalizers[m].block_mean  # imputed unless the item has the modality
            if m in normalized:
                pos = position[aligned.rows[m]]
                ok = pos >= 0
                block[pos[ok]] = w * normalized[m][ok]
            start += d
        return out

    # ---- encoding -----------------------------------------------------------------------------
    def transform(
        self,
        inputs: Mapping[str, Any],
        *,
        item_ids: Any = None,
        disambiguate: bool = False,
        taken: list[SemanticIDs] | None = None,
    ) -> SemanticIDs:
        """Encode items with the frozen codebooks.

        inputs: {modality: ModalityEmbeddings | (ids, X)}, any subset of the fitted modalities.
        item_ids: optional catalogue fixing the output rows and their order (items in it without
        any modality get null codes everywhere); default: every item in the inputs, in order of
        first appearance. disambiguate: add suffixes that do not reuse those of training items
        (nor of items in `taken`, earlier outputs whose suffixes must stay reserved).
        """
        self._check_fitted()
        mods = self._checked_inputs(inputs)
        aligned = _align(mods, self.modalities_, item_ids)
        normalized = {m: self.normalizers_[m].apply(e.X) for m, e in mods.items()}
        sids = self._encode(aligned, normalized)
        if any(e.synthetic for e in mods.values()):
            sids.metadata["psrq.synthetic"] = "true"
        if disambiguate:
            rank = id_ranks(sids.item_ids)
            sids.suffixes = {
                cb: self._suffixes_after_training(sids, cb, taken or [], rank)
                for cb in sids.codebooks
            }
        return sids

    def quantizer_fingerprint(self) -> str:
        """Identity of this fitted quantizer (settings, seed, fitted input, kinds, shapes): the
        same for sids written by `fit_transform` and by `transform` of the saved model, different
        for another method, other settings or other training data."""
        self._check_fitted()
        return fingerprint_obj(
            {
                "params": self.get_params(),
                "input": str(self.input_fingerprint_),
                "kinds": {cb: q.kind for cb, q in self.quantizers_.items()},
                "sizes": {
                    cb: [int(k) for k in q.codebook_sizes_] for cb, q in self.quantizers_.items()
                },
                "dims": self.dims_,
            }
        )

    def _checked_inputs(self, inputs: Mapping[str, Any]) -> dict[str, ModalityEmbeddings]:
        """Inputs as ModalityEmbeddings; InputError for a modality not fitted or a wrong width."""
        mods = _coerce_inputs(inputs)
        unknown = [m for m in mods if m not in self.modalities_]
        if unknown:
            raise InputError(
                f"modality {unknown} was not fitted; this model knows {self.modalities_}"
            )
        for m, e in mods.items():
            if e.dim != self.dims_[m]:
                raise InputError(
                    f"{e.source}: {m} embeddings have {e.dim} values; the model was fitted on {self.dims_[m]}"
                )
        return mods

    def _encode(self, aligned: _Aligned, normalized: dict[str, np.ndarray]) -> SemanticIDs:
        from tqdm.auto import tqdm

        n = len(aligned.item_ids)
        codes, present = {}, {}
        for cb in tqdm(self.quantizers_, desc="encoding", unit="codebook", disable=None):
            q = self.quantizers_[cb]
            codes[cb] = np.zeros((n, q.n_levels_), dtype=np.int32)
            present[cb] = np.zeros(n, dtype=bool)
            if cb == JOINT:
                rows = np.flatnonzero(aligned.has.any(axis=1))
                X = self._joint_matrix(
                    aligned, normalized, self.normalizers_, rows, self.modalities_
                )
            elif cb in normalized:
                rows, X = aligned.rows[cb], normalized[cb]
            else:
                continue  # modality absent from the inputs: null for everyone
            if len(rows):
                codes[cb][rows] = q.transform(X)
                present[cb][rows] = True
        meta = {
            "psrq.model_fingerprint": str(self.input_fingerprint_),
            # codebook -> k per level: what the ranking stage sizes its embedding tables with.
            "psrq.sid_sizes": json.dumps(
                {cb: [int(k) for k in q.codebook_sizes_] for cb, q in self.quantizers_.items()}
            ),
            "psrq.methods": json.dumps({cb: q.kind for cb, q in self.quantizers_.items()}),
            "psrq.quantizer_fingerprint": self.quantizer_fingerprint(),
        }
        if self.synthetic_:  # a model fitted on SYNTHETIC data labels everything it encodes
            meta["psrq.synthetic"] = "true"
        return SemanticIDs(
            aligned.item_ids, list(self.modalities_), aligned.has, codes, present, None, meta
        )

    def _suffixes_after_training(
        self, sids: SemanticIDs, cb: str, taken: list[SemanticIDs], id_rank: np.ndarray
    ) -> np.ndarray:
        known = [self.train_sids_, *taken]
        table = self.suffix_tables_[cb]
        for other in taken:
            if other.suffixes is None or cb not in other.codes:
                raise InputError(f"a taken semantic-ID table has no sid_{cb}_suffix column")
            if other.codes[cb].shape[1] != table.n_levels:
                raise InputError(
                    f"a taken semantic-ID table has {other.codes[cb].shape[1]} levels in sid_{cb}, the model {table.n_levels}"
                )
            p = other.present[cb]
            table = table.merge(SuffixTable.from_codes(other.codes[cb][p], other.suffixes[cb][p]))
        return _suffixes_for(sids, cb, taken=table, known=known, id_rank=id_rank)

    # ---- what each quantizer sees (for reports) --------------------------------------------------
    def quantizer_inputs(
        self, inputs: Mapping[str, Any]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{codebook: (item_ids, X)}: the exact matrix each codebook's quantizer encodes.

        Modalities: their normalised rows. Joint: the weighted concatenation, for items with at
        least one modality (missing blocks imputed, as in `transform`).
        """
        self._check_fitted()
        mods = self._checked_inputs(inputs)
        aligned = _align(mods, self.modalities_)
        normalized = {m: self.normalizers_[m].apply(e.X) for m, e in mods.items()}
        out = {m: (mods[m].item_ids, normalized[m]) for m in self.modalities_ if m in normalized}
        if JOINT in self.quantizers_:
            rows = np.flatnonzero(aligned.has.any(axis=1))
            out[JOINT] = (
                aligned.item_ids[rows],
                self._joint_matrix(aligned, normalized, self.normalizers_, rows, self.modalities_),
            )
        return out

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """One atomic model dir: manifest, codebooks/<name>/ (each a quantizer model dir),
        normalization.npz, train_sids.parquet, suffix_tables/<codebook>.parquet."""
        import pyarrow.parquet as pq

        self._check_fitted()
        fitted = {
            "modalities": self.modalities_,
            "dims": self.dims_,
            "codebooks": self.codebooks_,
            "kinds": {cb: q.kind for cb, q in self.quantizers_.items()},
            "n_levels": {cb: int(q.n_levels_) for cb, q in self.quantizers_.items()},
            "n_items": int(self.n_items_),
            "normalize": {m: n.mode for m, n in self.normalizers_.items()},
            "synthetic": bool(self.synthetic_),
            "train_collisions": self.train_sids_.collisions(),
        }
        with write_model_dir(
            path,
            kind=self.kind,
            params=self.get_params(),
            seed=self.seed,
            input_fingerprint=self.input_fingerprint_,
            extra={"fitted": fitted},
        ) as d:
            for cb, q in self.quantizers_.items():
                q.save(d / "codebooks" / cb)
            arrays = {}
            for m, norm in self.normalizers_.items():
                arrays[f"{m}.mean"], arrays[f"{m}.scale"], arrays[f"{m}.block_mean"] = (
                    norm.mean,
                    norm.scale,
                    norm.block_mean,
                )
            np.savez(d / "normalization.npz", **arrays)
            pq.write_table(self.train_sids_.to_table(), d / "train_sids.parquet")
            (d / "suffix_tables").mkdir()
            for cb, table in self.suffix_tables_.items():
                table.write(d / "suffix_tables" / f"{cb}.parquet")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultimodalQuantizer:
        """Load a model dir written by `save` (checks manifest, version and every checksum)."""
        from psrq.quantize.base import BaseQuantizer

        root = Path(path)
        manifest = read_model_dir(root, kind=cls.kind)
        try:
            est = cls(**manifest["params"])
            fitted = manifest["fitted"]
            est.modalities_ = list(fitted["modalities"])
            est.dims_ = {m: int(d) for m, d in fitted["dims"].items()}
            codebooks = list(fitted["codebooks"])
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{root}: manifest.json lacks {e}") from e
        est.quantizers_ = {cb: BaseQuantizer.load(root / "codebooks" / cb) for cb in codebooks}
        try:
            with np.load(root / "normalization.npz", allow_pickle=False) as z:
                est.normalizers_ = {
                    m: Normalizer(
                        fitted["normalize"][m],
                        z[f"{m}.mean"],
                        z[f"{m}.scale"],
                        z[f"{m}.block_mean"],
                    )
                    for m in est.modalities_
                }
        except (OSError, KeyError, ValueError) as e:
            raise ArtifactError(f"{root}: cannot read normalization.npz ({e})") from e
        est.train_sids_ = SemanticIDs.read(root / "train_sids.parquet")
        est.suffix_tables_ = {
            cb: SuffixTable.read(root / "suffix_tables" / f"{cb}.parquet") for cb in codebooks
        }
        est.n_items_ = int(fitted["n_items"])
        est.synthetic_ = bool(fitted.get("synthetic", False))
        est.input_fingerprint_ = manifest.get("input_fingerprint")
        return est


def _sample_ids(ids: np.ndarray, k: int = 10_000) -> list[str]:
    step = max(1, len(ids) // k)
    return [str(len(ids)), *ids[::step].tolist()]


def _suffixes_for(
    sids: SemanticIDs,
    cb: str,
    *,
    taken: SuffixTable | None,
    id_rank: np.ndarray,
    known: list[SemanticIDs] | None = None,
) -> np.ndarray:
    """Suffix int32 [n] for one codebook (-1 where absent).

    Items found in `known` tables (same ID, same tuple, with a suffix) keep that suffix; the
    others are numbered by item ID within their tuple, starting at `taken`'s first free suffix.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, present = sids.codes[cb], sids.present[cb]
    suffix = np.full(len(sids), -1, dtype=np.int32)
    todo = present.copy()
    ids = pa.array(sids.item_ids, type=pa.string())
    for other in known or []:
        if other.suffixes is None or cb not in other.codes or not todo.any():
            continue
        pos = pc.index_in(ids, value_set=pa.array(other.item_ids, type=pa.string()))
        pos = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        cand = np.flatnonzero(todo & (pos >= 0))
        src = pos[cand]
        same = (
            other.present[cb][src]
            & (other.codes[cb][src] == codes[cand]).all(axis=1)
            & (other.suffixes[cb][src] >= 0)
        )
        suffix[cand[same]] = other.suffixes[cb][src[same]]
        todo[cand[same]] = False
    rows = np.flatnonzero(todo)
    suffix[rows] = assign_suffixes(
        sids.item_ids[rows], codes[rows], taken=taken, id_rank=id_rank[rows]
    )
    return suffix
