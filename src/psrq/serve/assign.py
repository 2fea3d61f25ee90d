"""Semantic IDs for new items with the frozen quantizer (what POST /v1/items/sids runs).

Each item brings, per modality, a precomputed vector, or text for the text encoder, or an audio
file for the audio encoder; modalities it lacks get null codes and the joint ID imputes them
exactly as `psrq assign` does (`MultimodalQuantizer.transform`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psrq.serve.loaded import Loaded
from psrq.serve.schemas import ItemSids, NewItem, SidsResponse


class RequestError(Exception):
    """A bad request: `field` is the dotted path of the offending field, `status` the HTTP code."""

    def __init__(self, field: str, reason: str, status: int = 422) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status


@dataclass
class AudioUpload:
    """An uploaded audio file, already decoded to a mono waveform at the encoder's rate."""

    item_id: str
    wave: np.ndarray


def check_vector(loaded: Loaded, modality: str, vector: list[float], where: str) -> np.ndarray:
    """float32 [d] or RequestError naming `where` (unknown modality, wrong width, NaN)."""
    if modality not in loaded.modalities:
        raise RequestError(
            where, f"unknown modality {modality!r}; this quantizer has {loaded.modalities}"
        )
    x = np.asarray(vector, dtype=np.float32)
    want = int(loaded.quantizer.dims_[modality])
    if x.ndim != 1 or x.shape[0] != want:
        raise RequestError(
            where,
            f"has {x.shape[0] if x.ndim == 1 else x.shape} values; the {modality} codebook expects {want}",
        )
    if not np.isfinite(x).all():
        raise RequestError(where, "contains NaN or infinity")
    return x


def gather_vectors(
    loaded: Loaded,
    items: list[NewItem],
    audio: list[AudioUpload] | None = None,
    field: str = "items",
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, str]]]:
    """{modality: {item_id: vector}} and {item_id: {modality: source}} for a batch of new items."""
    vectors: dict[str, dict[str, np.ndarray]] = {m: {} for m in loaded.modalities}
    sources: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    texts: list[tuple[int, NewItem]] = []
    for i, item in enumerate(items):
        if item.item_id in seen:
            raise RequestError(
                f"{field}.{i}.item_id", f"item {item.item_id!r} appears twice in this request"
            )
        seen.add(item.item_id)
        sources[item.item_id] = {}
        for m, vec in item.embeddings.items():
            vectors[m][item.item_id] = check_vector(loaded, m, vec, f"{field}.{i}.embeddings.{m}")
            sources[item.item_id][m] = "embedding"
        if item.text is not None:
            if "text" in item.embeddings:
                raise RequestError(f"{field}.{i}.text", "give text or embeddings.text, not both")
            if loaded.text_encoder is None:
                raise RequestError(
                    f"{field}.{i}.text",
                    "this service has no text encoder (start it with --text-encoder); send embeddings.text instead",
                )
            texts.append((i, item))
    if texts:
        X = loaded.text_encoder.encode([item.text for _, item in texts])
        for (_, item), x in zip(texts, X, strict=True):
            vectors["text"][item.item_id] = np.asarray(x, dtype=np.float32)
            sources[item.item_id]["text"] = "text"
    for up in audio or []:
        if up.item_id not in sources:
            sources[up.item_id] = {}
        x = loaded.audio_encoder.encode([up.wave])[0]
        vectors["audio"][up.item_id] = np.asarray(x, dtype=np.float32)
        sources[up.item_id]["audio"] = "audio"
    for i, item in enumerate(items):
        if not sources[item.item_id]:
            raise RequestError(
                f"{field}.{i}", "the item has neither text, an audio file nor embeddings"
            )
    return vectors, sources


def assign_sids(
    loaded: Loaded,
    vectors: dict[str, dict[str, np.ndarray]],
    item_ids: list[str],
    *,
    disambiguate: bool = False,
) -> Any:
    """SemanticIDs for `item_ids` (rows in that order) from {modality: {item_id: vector}}."""
    inputs = {m: (list(v), np.stack(list(v.values()))) for m, v in vectors.items() if v}
    return loaded.quantizer.transform(inputs, item_ids=item_ids, disambiguate=disambiguate)


def sids_response(loaded: Loaded, sids: Any, sources: dict[str, dict[str, str]]) -> SidsResponse:
    missing = sids.missing_modalities()
    out = []
    for r, item_id in enumerate(sids.item_ids.tolist()):
        codes = {
            cb: (sids.codes[cb][r].tolist() if sids.present[cb][r] else None)
            for cb in sids.codebooks
        }
        suffixes = None
        if sids.suffixes is not None:
            suffixes = {
                cb: (int(sids.suffixes[cb][r]) if sids.present[cb][r] else None)
                for cb in sids.codebooks
            }
        out.append(
            ItemSids(
                item_id=item_id,
                sids=codes,
                suffixes=suffixes,
                missing_modalities=missing[r],
                sources=sources[item_id],
            )
        )
    return SidsResponse(
        quantizer_fingerprint=loaded.fingerprints["quantizer"],
        codebooks=list(sids.codebooks),
        items=out,
    )
