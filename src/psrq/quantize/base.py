"""The estimator contract every quantizer follows (scikit-learn style).

    q = PSRQ(n_levels=3, codebook_size=128, seed=0).fit(X)   # X: [n_items, dim]
    codes = q.transform(X)                                   # int32 [n_items, n_levels]
    X_hat = q.inverse_transform(codes)                       # float32 [n_items, dim]
    q.save("model_dir"); q2 = PSRQ.load("model_dir")

Quantizers are scikit-learn estimators (`BaseEstimator`): constructors only store keyword
arguments, so `get_params(deep=...)`, `set_params`, `sklearn.base.clone`, `Pipeline` and
`GridSearchCV` work (`score` is the negative reconstruction error, which grid search maximises).
Learned state lives in attributes ending in `_`. Parameters are checked in one hook,
`_check_params()`, which `fit` calls before reading any data.
Subclasses implement `_check_params()`, `_fit(source)`, `_encode(batch)`, `_decode(codes)`,
`_state()`, `_set_state(state)`; this base does input validation, batching, persistence and checks.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from psrq.artifacts import read_model_dir, write_model_dir
from psrq.errors import ArtifactError, InputError, NotFittedError
from psrq.quantize.inputs import EmbeddingSource, as_source
from psrq.quantize.registry import quantizer_class

# Encoding is done in chunks of this many rows so no wide temporary ever spans the whole input.
ENCODE_BATCH = 65_536


def resolve_codebook_sizes(
    codebook_size: int | list[int] | tuple[int, ...], n_levels: int
) -> list[int]:
    """One size per level: an int is repeated, a list must have `n_levels` entries."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, int | np.integer):
        raise InputError(f"n_levels must be an int, got {n_levels!r}")
    is_int = isinstance(codebook_size, int | np.integer) and not isinstance(codebook_size, bool)
    if not is_int and not (
        isinstance(codebook_size, list | tuple)
        and all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in codebook_size)
    ):
        raise InputError(
            f"codebook_size must be an int or a list of ints (one per level), got {codebook_size!r}"
        )
    if is_int:
        sizes = [int(codebook_size)] * n_levels
    else:
        sizes = [int(k) for k in codebook_size]
        if len(sizes) != n_levels:
            raise InputError(
                f"codebook_size has {len(sizes)} entries but n_levels={n_levels}; give one per level"
            )
    if n_levels < 1:
        raise InputError(f"n_levels must be >= 1, got {n_levels}")
    bad = [k for k in sizes if k < 1]
    if bad:
        raise InputError(f"codebook sizes must be >= 1, got {sizes}")
    return sizes


class BaseQuantizer(BaseEstimator):
    """Shared machinery; see the module docstring for the contract."""

    kind: ClassVar[str] = "base"

    # ---- parameters -------------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's keyword-only parameters, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]

    def set_params(self, **params: Any) -> BaseQuantizer:
        unknown = [k for k in params if k not in self._param_names()]
        if unknown:  # an InputError naming the parameter, where scikit-learn raises a ValueError
            raise InputError(f"{type(self).__name__} has no parameter {unknown[0]!r}")
        return super().set_params(**params)

    def _check_params(self) -> Any:
        """The one parameter check: raise InputError naming a bad parameter.

        `fit` calls it before reading any data; subclasses return what `_fit` needs (their
        per-level codebook sizes).
        """
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- fitted state -----------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    def __sklearn_is_fitted__(self) -> bool:  # what sklearn.utils.validation.check_is_fitted asks
        return self.is_fitted

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X) or {type(self).__name__}.load(path)"
            )

    @property
    def n_levels_(self) -> int:
        self._check_fitted()
        return len(self.codebook_sizes_)

    # ---- public API ---------------------------------------------------------------------------
    def fit(self, X: Any, y: None = None) -> BaseQuantizer:
        """Learn codebooks from X ([n_items, dim] array, .npy path, or EmbeddingSource)."""
        self._check_params()  # before reading any data: a bad parameter fails fast
        source = as_source(X, on_invalid=getattr(self, "on_invalid", "raise"))
        if source.n_rows == 0:
            dropped = len(getattr(source, "dropped_rows", ()))
            why = f": all {dropped} rows hold NaN or inf" if dropped else ""
            raise InputError(
                f"cannot fit {type(self).__name__} on empty input ({source.name}){why}"
            )
        self._fit(source)
        self.dim_ = source.dim
        self.n_fit_rows_ = source.n_rows
        self.input_fingerprint_ = source.fingerprint()
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Codes for each row: int32 [n_items, n_levels]. Rows are encoded in chunks."""
        self._check_fitted()
        source = as_source(X, on_invalid="raise")
        self._check_dim(source)
        codes = np.empty((source.n_rows, self.n_levels_), dtype=np.int32)
        n_batches = -(-source.n_rows // ENCODE_BATCH)
        batches = tqdm(
            source.iter_batches(ENCODE_BATCH),
            total=n_batches,
            desc=f"{type(self).__name__} encode",
            unit="batch",
            leave=False,
            disable=None if n_batches > 4 else True,  # None: shown on a terminal only
        )
        for start, batch in batches:
            codes[start : start + len(batch)] = self._encode(batch)
        return codes

    def fit_transform(self, X: Any, y: None = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, codes: Any, *, n_levels: int | None = None) -> np.ndarray:
        """Reconstruction float32 [n_items, dim] from codes int [n_items, n_levels].

        With `n_levels=l`, only the first l levels are used (the coarse-to-fine reconstruction
        the ID-quality report measures per level).
        """
        self._check_fitted()
        codes = self._check_codes(codes)
        used = self.n_levels_ if n_levels is None else int(n_levels)
        if not 1 <= used <= self.n_levels_:
            raise InputError(f"n_levels must be in [1, {self.n_levels_}], got {n_levels}")
        return self._decode(codes, used).astype(np.float32, copy=False)

    def score(self, X: Any, y: None = None) -> float:
        """Negative mean squared reconstruction error per item (higher is better).

        -mean_i ||x_i - inverse_transform(transform(x_i))||^2 over the rows of X (any input
        `transform` takes, streamed in chunks); what `GridSearchCV` maximises when no `scoring`
        is given.
        """
        self._check_fitted()
        source = as_source(X, on_invalid="raise")
        self._check_dim(source)
        if source.n_rows == 0:
            raise InputError(f"cannot score {type(self).__name__} on empty input ({source.name})")
        total = 0.0
        for _, batch in source.iter_batches(ENCODE_BATCH):
            codes = np.asarray(self._encode(batch), dtype=np.int64)
            error = batch - self._decode(codes, self.n_levels_)
            total += float(np.einsum("ij,ij->", error, error, dtype=np.float64))
        return -total / source.n_rows

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an atomic model directory: manifest.json + state.npz (+ subclass files)."""
        self._check_fitted()
        state = self._state()
        meta = {
            "dim_": int(self.dim_),
            "codebook_sizes_": [int(k) for k in self.codebook_sizes_],
            "n_fit_rows_": int(self.n_fit_rows_),
        }
        with write_model_dir(
            path,
            kind=self.kind,
            params=self.get_params(),
            seed=getattr(self, "seed", None),
            input_fingerprint=self.input_fingerprint_,
            extra={"fitted": meta},
        ) as d:
            arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
            others = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
            np.savez(d / "state.npz", **arrays)
            self._save_extra(d, others)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BaseQuantizer:
        """Load a model directory written by `save`, checking kind, version and checksums."""
        kinds = cls.kind if cls is not BaseQuantizer else None
        manifest = read_model_dir(path, kind=kinds)
        target = cls if cls is not BaseQuantizer else quantizer_class(manifest["kind"])
        try:
            est = target(**manifest["params"])
        except TypeError as e:  # a hand-edited manifest, or one from another psrq version
            raise ArtifactError(f"{path}: manifest params do not fit {target.__name__}: {e}") from e
        try:
            with np.load(Path(path) / "state.npz", allow_pickle=False) as z:
                state: dict[str, Any] = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: cannot read state.npz: {e}") from e
        state.update(est._load_extra(Path(path)))
        try:
            fitted = manifest["fitted"]
            est.dim_ = int(fitted["dim_"])
            est.codebook_sizes_ = [int(k) for k in fitted["codebook_sizes_"]]
            est.n_fit_rows_ = int(fitted["n_fit_rows_"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{path}: manifest has no valid 'fitted' section ({e!r})") from e
        est.input_fingerprint_ = manifest.get("input_fingerprint")
        try:
            est._set_state(state)
        except (KeyError, ValueError, IndexError) as e:
            raise ArtifactError(f"{path}: state does not match the manifest: {e}") from e
        return est

    # Subclasses with non-array state (e.g. torch weights) override these two.
    def _save_extra(self, directory: Path, others: dict[str, Any]) -> None:
        if others:
            (directory / "extra.json").write_text(json.dumps(others))

    def _load_extra(self, directory: Path) -> dict[str, Any]:
        f = directory / "extra.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    # ---- checks -------------------------------------------------------------------------------
    def _check_dim(self, source: EmbeddingSource) -> None:
        if source.dim != self.dim_:
            raise InputError(
                f"{source.name} has {source.dim} columns but this {type(self).__name__} was fitted on {self.dim_}"
            )

    def _check_codes(self, codes: Any) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.n_levels_:
            raise InputError(
                f"codes must have shape [n_items, {self.n_levels_}], got {codes.shape}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"codes must be integers, got dtype {codes.dtype}")
        for level, k in enumerate(self.codebook_sizes_):
            col = codes[:, level]
            if col.size and (col.min() < 0 or col.max() >= k):
                bad = int(np.flatnonzero((col < 0) | (col >= k))[0])
                raise InputError(
                    f"code {int(col[bad])} at row {bad}, level {level} is outside [0, {k})"
                )
        return codes.astype(np.int64, copy=False)

    # ---- to implement -------------------------------------------------------------------------
    def _fit(self, source: EmbeddingSource) -> None:  # sets codebook_sizes_ and learned state
        raise NotImplementedError

    def _encode(self, batch: np.ndarray) -> np.ndarray:  # float32 [b, dim] -> int [b, n_levels]
        raise NotImplementedError

    def _decode(self, codes: np.ndarray, n_levels: int) -> np.ndarray:
        # int64 [b, n_levels] -> float [b, dim], using only the first `n_levels` levels
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError
