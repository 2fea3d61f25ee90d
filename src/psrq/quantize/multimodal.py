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
(`psrq.quantize.collisions`, `psrq.quantize.suffixes`) number the items sharing a tuple in
item-ID order; for items encoded after training, suffixes continue after those taken by
training items (the model directory stores the training IDs and the tuple -> next free suffix
table), and a training item encoded again keeps its training suffix as long as its codes are
unchanged.

SYNTHETIC inputs (Parquet metadata ``psrq.synthetic = true``) label the model and every
sids.parquet it writes with the same key.

Where the parts live: the estimator here; the normalisation in `psrq.quantize.normalize`; the
suffix rules in `psrq.quantize.suffixes`; the result, `SemanticIDs`, and its Parquet format in
`psrq.formats.sids`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from psrq.artifacts import fingerprint_array, fingerprint_obj, read_model_dir, write_model_dir
from psrq.errors import ArtifactError, ConfigError, InputError, NotFittedError
from psrq.formats.embeddings import (
    ModalityEmbeddings,
    check_modality_name,
    check_unique_ids,
    from_arrays,
    ids_to_strings,
)
from psrq.formats.sids import JOINT, SemanticIDs
from psrq.quantize.collisions import SuffixTable, id_ranks, sid_collisions
from psrq.quantize.normalize import NORMALIZATIONS, Normalizer
from psrq.quantize.registry import QUANTIZERS, resolve_method
from psrq.quantize.suffixes import suffixes_after_training, suffixes_for


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
            cb: suffixes_for(sids, cb, taken=None, id_rank=rank) for cb in sids.codebooks
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
                cb: suffixes_after_training(
                    sids, cb, self.train_sids_, self.suffix_tables_[cb], taken or [], rank
                )
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
            "train_collisions": sid_collisions(self.train_sids_),
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
