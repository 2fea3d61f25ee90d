"""Frozen artifacts a service holds: quantizer, optional ranker, optional encoders, explorer data.

    spec = ServeSpec(quantizer="runs/lastfm2k/quantizers/psrq", ranker="runs/lastfm2k/rank/mcca-psrq/seed0")
    loaded = load_artifacts(spec)          # verifies every manifest + checksum, or raises
    loaded.version_info()                  # what GET /v1/version reports

Everything here is read once at start (or at a reload) and never written: a request reads the
`Loaded` object it started with, so an atomic swap of that object is a reload.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import sha256_file
from psrq.errors import ArtifactError, InputError
from psrq.formats.embeddings import embeddings_metadata
from psrq.formats.sids import JOINT


@dataclass(frozen=True)
class ServeSpec:
    """Which model directories and encoders to load (paths as the operator gave them)."""

    quantizer: str
    ranker: str | None = None
    text_encoder: str | None = None  # 'minilm' or a local model directory
    audio_encoder: str | None = None  # 'musicnn-msd' or a local model directory
    items: str | None = None  # items.parquet (titles for the explorer)
    embeddings: str | None = None  # embeddings directory (<modality>.parquet) for the explorer

    def with_overrides(self, **changes: str | None) -> ServeSpec:
        values = {**self.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        return ServeSpec(**values)


@dataclass
class Loaded:
    """One consistent set of frozen artifacts (never mutated after `load_artifacts`)."""

    spec: ServeSpec
    quantizer: Any  # MultimodalQuantizer
    ranker: Any | None  # psrq.serve.ranker.Ranker
    text_encoder: Any | None
    audio_encoder: Any | None
    fingerprints: dict[str, str]
    loaded_at: str
    load_seconds: float
    generation: int = 0
    explorer: Any | None = None  # psrq.serve.explorer.ExplorerIndex, built lazily
    explorer_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def codebooks(self) -> list[str]:
        return list(self.quantizer.codebooks_)

    @property
    def modalities(self) -> list[str]:
        return list(self.quantizer.modalities_)

    def codebook_quantizer(self, codebook: str) -> Any | None:
        return codebook_quantizer(self.quantizer, codebook)

    def version_info(self) -> dict[str, Any]:
        from psrq import __version__

        return {
            "psrq_version": __version__,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
            "generation": self.generation,
            "worker_pid": os.getpid(),
            "models": {
                name: {"path": path, "fingerprint": self.fingerprints[name]}
                for name, path in self._paths().items()
            },
        }

    def _paths(self) -> dict[str, str]:
        out = {"quantizer": self.spec.quantizer}
        if self.spec.ranker is not None:
            out["ranker"] = self.spec.ranker
        if self.text_encoder is not None:
            out["text_encoder"] = str(self.spec.text_encoder)
        if self.audio_encoder is not None:
            out["audio_encoder"] = str(self.spec.audio_encoder)
        return out


def joint_alias(quantizer: Any) -> str | None:
    """With one modality and no joint codebook, the ranking stage's joint SID *is* that
    modality's SID (`psrq.rank.train.with_single_modality_joint`): the modality it aliases."""
    mods = list(quantizer.modalities_)
    if JOINT not in quantizer.quantizers_ and len(mods) == 1:
        return mods[0]
    return None


def codebook_quantizer(quantizer: Any, codebook: str) -> Any | None:
    """The quantizer behind `codebook` (the aliased modality's for a single-modality joint)."""
    q = quantizer.quantizers_.get(codebook)
    if q is None and codebook == JOINT and joint_alias(quantizer) is not None:
        q = quantizer.quantizers_[joint_alias(quantizer)]
    return q


def manifest_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """First 16 hex digits of the SHA-256 of manifest.json (which lists every file's checksum)."""
    return sha256_file(Path(model_dir) / "manifest.json")[:16]


def load_artifacts(spec: ServeSpec, *, generation: int = 0) -> Loaded:
    """Load and verify everything `spec` names; ArtifactError/InputError say what is wrong."""
    from psrq.quantize.multimodal import MultimodalQuantizer

    start = time.perf_counter()
    quantizer = MultimodalQuantizer.load(spec.quantizer)
    fingerprints = {"quantizer": manifest_fingerprint(spec.quantizer)}
    ranker = None
    if spec.ranker is not None:
        ranker = _load_ranker(spec.ranker, quantizer)
        fingerprints["ranker"] = manifest_fingerprint(ranker.path)
    text_encoder = _load_encoder("text", spec.text_encoder, quantizer, spec.embeddings)
    audio_encoder = _load_encoder("audio", spec.audio_encoder, quantizer, spec.embeddings)
    for name, enc in (("text_encoder", text_encoder), ("audio_encoder", audio_encoder)):
        if enc is not None:
            fingerprints[name] = str(enc.fingerprint)[:16]
    if spec.items is not None and not Path(spec.items).is_file():
        raise InputError(f"items file not found: {spec.items}")
    if spec.embeddings is not None and not Path(spec.embeddings).is_dir():
        raise InputError(f"embeddings directory not found: {spec.embeddings}")
    return Loaded(
        spec=spec,
        quantizer=quantizer,
        ranker=ranker,
        text_encoder=text_encoder,
        audio_encoder=audio_encoder,
        fingerprints=fingerprints,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=time.perf_counter() - start,
        generation=generation,
    )


def _load_ranker(path: str, quantizer: Any) -> Any:
    """Ranker.load (manifest + checksums) and a check that its SIDs fit the quantizer's codebooks."""
    from psrq.serve.ranker import Ranker

    ranker = Ranker.load(path)
    for cb, sizes in ranker.tables.sid_sizes.items():
        if cb not in ranker.model.codebooks:
            continue
        q = codebook_quantizer(quantizer, cb)
        if q is None:
            raise ArtifactError(
                f"ranker {path} uses codebook {cb!r}, which quantizer has only {list(quantizer.quantizers_)}"
            )
        q_sizes = [int(k) for k in q.codebook_sizes_]
        if q_sizes != [int(k) for k in sizes]:
            raise ArtifactError(
                f"ranker {path} was trained on codebook {cb!r} with sizes {sizes}; the quantizer has {q_sizes}"
            )
    return ranker


def _load_encoder(
    modality: str, name: str | None, quantizer: Any, embeddings: str | None
) -> Any | None:
    if name is None:
        return None
    if modality not in quantizer.modalities_:
        raise ArtifactError(
            f"a {modality} encoder was given but the quantizer has no {modality} codebook ({quantizer.modalities_})"
        )
    if modality == "text":
        from psrq.features.text import load_text_encoder

        enc = load_text_encoder(name)
    else:
        from psrq.features.embed import load_audio_encoder

        enc = load_audio_encoder(name)
    if int(enc.dim) != int(quantizer.dims_[modality]):
        raise ArtifactError(
            f"{modality} encoder {name!r} produces {enc.dim}-d vectors; the quantizer was fitted on {quantizer.dims_[modality]}-d {modality} embeddings"
        )
    # With the embeddings the quantizer was fitted on, the encoder must be the one that wrote them.
    recorded = (
        embeddings_metadata(Path(embeddings) / f"{modality}.parquet").get(
            "psrq.encoder_fingerprint"
        )
        if embeddings
        else None
    )
    if recorded and recorded != str(enc.fingerprint):
        raise ArtifactError(
            f"{modality} encoder {name!r} (fingerprint {str(enc.fingerprint)[:16]}) is not the encoder that wrote "
            f"{embeddings}/{modality}.parquet (fingerprint {recorded[:16]})"
        )
    return enc


def as_matrix(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)
