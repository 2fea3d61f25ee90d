"""Scoring a user's candidates with the frozen ranker (what POST /v1/score runs).

New items (never seen by the ranker) are described by their SIDs, given directly or assigned
from embeddings by the frozen quantizer; content models also get the embeddings as content.
They share the OOV item-ID embedding (the documented new-item path, docs/ranking.md) and are
flagged "new"; unknown items nobody described are flagged "unknown" (OOV features only).

Concurrency: `Ranker.score` is safe for concurrent callers (it never modifies the shared model;
new items get a per-request view with small tables), so requests score in parallel threads
with no lock here; tests/serve/test_serve_concurrency.py pins concurrent == sequential.
"""

from __future__ import annotations

import numpy as np

from psrq.formats.sids import JOINT
from psrq.serve.assign import RequestError, assign_sids, check_vector
from psrq.serve.loaded import Loaded, joint_alias
from psrq.serve.schemas import ScoredItem, ScoreRequest, ScoreResponse

_STATUS = {"known": "known", "new (SIDs/content)": "new", "unknown (OOV only)": "unknown"}


def check_codes(loaded: Loaded, codebook: str, codes: list[int], where: str) -> np.ndarray:
    """Codes int64 [n_levels] valid for the quantizer's codebook, or RequestError naming `where`."""
    q = loaded.codebook_quantizer(codebook)
    if q is None:
        raise RequestError(
            where,
            f"unknown codebook {codebook!r}; the quantizer's codebooks are {loaded.codebooks}",
        )
    sizes = [int(k) for k in q.codebook_sizes_]
    arr = np.asarray(codes, dtype=np.int64)
    if arr.shape != (len(sizes),):
        raise RequestError(
            where, f"has {len(codes)} levels; codebook {codebook!r} has {len(sizes)}"
        )
    for level, (c, k) in enumerate(zip(arr.tolist(), sizes, strict=True)):
        if not 0 <= c < k:
            raise RequestError(
                f"{where}.{level}", f"code {c} is outside level {level}'s codebook of size {k}"
            )
    return arr


def describe_new_items(
    loaded: Loaded, request: ScoreRequest
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """(new_sids, new_content) for `Ranker.score` from the request's new_items."""
    ranker = loaded.ranker
    new_sids: dict[str, dict[str, np.ndarray]] = {}
    new_content: dict[str, dict[str, np.ndarray]] = {}
    to_assign: dict[str, dict[str, np.ndarray]] = {}
    seen: set[str] = set()
    alias = joint_alias(loaded.quantizer)

    def used_codes(codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The codebooks the ranker uses; a single modality's codes also stand as the joint SID."""
        if alias is not None and alias in codes and JOINT not in codes:
            codes = {**codes, JOINT: codes[alias]}
        return {cb: c for cb, c in codes.items() if cb in ranker.tables.sid_sizes}

    for i, item in enumerate(request.new_items):
        where = f"new_items.{i}"
        if item.item_id in seen:
            raise RequestError(
                f"{where}.item_id", f"item {item.item_id!r} appears twice in new_items"
            )
        seen.add(item.item_id)
        if not item.sids and not item.embeddings:
            raise RequestError(where, "a new item needs sids or embeddings")
        checked = {
            cb: check_codes(loaded, cb, codes, f"{where}.sids.{cb}")
            for cb, codes in item.sids.items()
        }
        new_sids[item.item_id] = used_codes(checked)
        vectors = {
            m: check_vector(loaded, m, v, f"{where}.embeddings.{m}")
            for m, v in item.embeddings.items()
        }
        content = {m: x for m, x in vectors.items() if m in ranker.tables.content}
        if content:
            new_content[item.item_id] = content
        if vectors and not item.sids:
            for m, x in vectors.items():
                to_assign.setdefault(m, {})[item.item_id] = x
    if to_assign:
        ids = list(dict.fromkeys(i for per in to_assign.values() for i in per))
        sids = assign_sids(loaded, to_assign, ids)
        for r, item_id in enumerate(ids):
            new_sids[item_id] = used_codes(
                {
                    cb: sids.codes[cb][r].astype(np.int64)
                    for cb in sids.codebooks
                    if sids.present[cb][r]
                }
            )
    # An item described only in codebooks this ranker does not use is, for it, unknown (OOV only).
    return {k: v for k, v in new_sids.items() if v}, new_content


def score(loaded: Loaded, request: ScoreRequest) -> ScoreResponse:
    ranker = loaded.ranker
    new_sids, new_content = describe_new_items(loaded, request)
    if len(set(request.candidates)) != len(request.candidates):
        seen: set[str] = set()
        dupe = next(c for c in request.candidates if c in seen or seen.add(c))
        raise RequestError("candidates", f"item {dupe!r} is listed twice")
    ranked = ranker.score(
        request.history, request.candidates, new_sids=new_sids, new_content=new_content
    )
    described = set(new_sids) | set(new_content)
    known_h = ranker.tables.knows(request.history) if request.history else np.zeros(0, bool)
    unknown_history = [
        h
        for h, k in zip(request.history, known_h.tolist(), strict=True)
        if not k and h not in described
    ]
    if request.top_k is not None:
        ranked = ranked[: request.top_k]
    return ScoreResponse(
        model=str(ranker.spec["model"]),
        ranker_fingerprint=loaded.fingerprints["ranker"],
        results=[
            ScoredItem(
                item_id=r["item_id"],
                score=r["score"],
                logit=r["logit"],
                status=_STATUS[r["status"]],
            )
            for r in ranked
        ],
        unknown_history=unknown_history,
        history_used=min(len(request.history), ranker.max_history),
    )
