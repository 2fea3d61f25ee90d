"""Pydantic models of every request and response of `psrq serve`.

Limits that depend on the running service (batch size, candidates) are checked in the routes,
so the error names the field and the configured limit; shapes and types are checked here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ITEM_ID = Field(min_length=1, max_length=256, description="item identifier (string)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors ----------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    field: str = Field(
        description="the offending field, dotted path (e.g. items.0.embeddings.text)"
    )
    reason: str


class ErrorResponse(BaseModel):
    error: str = Field(description="short class of error: invalid_request, unauthorized, ...")
    detail: list[ErrorDetail]


# ---- /v1/items/sids ----------------------------------------------------------------------------
class NewItem(_Strict):
    item_id: str = ITEM_ID
    text: str | None = Field(
        None,
        min_length=1,
        max_length=20_000,
        description="item text, embedded by the service's text encoder",
    )
    embeddings: dict[str, list[float]] = Field(
        default_factory=dict, description="precomputed embeddings per modality {modality: vector}"
    )


class SidsRequest(_Strict):
    items: list[NewItem] = Field(min_length=1)
    disambiguate: bool = Field(
        False, description="add collision suffixes (continuing after the training items')"
    )


class ItemSids(BaseModel):
    item_id: str
    sids: dict[str, list[int] | None] = Field(
        description="codebook -> codes per level (null: modality missing)"
    )
    suffixes: dict[str, int | None] | None = Field(
        None, description="codebook -> suffix (with disambiguate)"
    )
    missing_modalities: list[str]
    sources: dict[str, Literal["embedding", "text", "audio"]] = Field(
        description="modality -> where its vector came from"
    )


class SidsResponse(BaseModel):
    quantizer_fingerprint: str
    codebooks: list[str]
    items: list[ItemSids]


# ---- /v1/score ----------------------------------------------------------------------------------
class ScoreNewItem(_Strict):
    item_id: str = ITEM_ID
    sids: dict[str, list[int]] = Field(
        default_factory=dict, description="codebook -> codes per level"
    )
    embeddings: dict[str, list[float]] = Field(
        default_factory=dict,
        description="modality -> vector; SIDs are assigned from these when `sids` is empty",
    )


class ScoreRequest(_Strict):
    history: list[str] = Field(default_factory=list, description="the user's items, oldest first")
    candidates: list[str] = Field(min_length=1, description="items to rank")
    new_items: list[ScoreNewItem] = Field(
        default_factory=list, description="items the ranker never saw, described by SIDs"
    )
    top_k: int | None = Field(None, ge=1, description="return only the best k")


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="sigmoid of the logit")
    logit: float
    status: Literal["known", "new", "unknown"] = Field(
        description="known: trained item; new: unseen, scored from its SIDs/content (shared OOV ID embedding); "
        "unknown: unseen and not described, scored with OOV features only"
    )


class ScoreResponse(BaseModel):
    model: str
    ranker_fingerprint: str
    results: list[ScoredItem]
    unknown_history: list[str] = Field(
        description="history items the ranker does not know and no new_items entry describes"
    )
    history_used: int = Field(description="history items after keeping the newest max_history")


# ---- health, version, admin --------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    generation: int
    quantizer: bool
    ranker: bool
    text_encoder: bool
    audio_encoder: bool


class ModelInfo(BaseModel):
    path: str
    fingerprint: str


class VersionResponse(BaseModel):
    psrq_version: str
    loaded_at: str
    load_seconds: float
    generation: int
    worker_pid: int = Field(
        description="process ID of the worker that answered (with --workers > 1)"
    )
    models: dict[str, ModelInfo]


class ReloadRequest(_Strict):
    quantizer: str | None = Field(
        None, description="new quantizer model directory (default: the current one)"
    )
    ranker: str | None = Field(
        None, description="new ranker model directory (default: the current one)"
    )


class ReloadResponse(BaseModel):
    generation: int
    loaded_at: str
    load_seconds: float
    models: dict[str, ModelInfo]


# ---- explorer ---------------------------------------------------------------------------------
class CodeChild(BaseModel):
    code: int
    size: int = Field(description="items under prefix + [code]")


class CodesResponse(BaseModel):
    codebook: str
    prefix: list[int]
    level: int
    n_levels: int
    prefix_size: int
    children: list[CodeChild]


class ExplorerItem(BaseModel):
    item_id: str
    title: str | None
    codes: list[int] | None


class ItemsResponse(BaseModel):
    codebook: str
    prefix: list[int]
    total: int
    items: list[ExplorerItem]


class Neighbour(BaseModel):
    item_id: str
    title: str | None
    shared_levels: int | None = None
    cosine: float | None = None


class ItemDetail(BaseModel):
    item_id: str
    title: str | None
    codes: dict[str, list[int] | None]
    codebook: str
    code_neighbours: list[Neighbour]
    embedding_neighbours: list[Neighbour]
    embedding_space: str | None = Field(
        description="what the embedding neighbours were measured in, or null when no embeddings were loaded"
    )


class ExplorerSummary(BaseModel):
    codebooks: list[str]
    n_levels: dict[str, int]
    n_items: int
    has_titles: bool
    has_embeddings: bool
    synthetic: bool
