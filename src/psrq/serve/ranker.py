"""Scoring with a trained ranking model: the frozen `Ranker` behind `psrq score`, `psrq evaluate`
and the HTTP service.

    ranker = Ranker.load("runs/mcca")        # a model directory or a training output holding model/
    ranker.score(["289", "72"], ["89", "292"])

Reads the model-directory format of psrq.rank.model_dir (training writes it); imports the ranking
stage (models, batches, evaluation), never the other way round.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psrq.errors import InputError
from psrq.formats.ids import read_parquet as read_table
from psrq.rank.batches import ItemTables, encode_samples
from psrq.rank.model_dir import load_model
from psrq.rank.models import OOV, RankingModel
from psrq.rank.models import PAD as PAD_ROW
from psrq.rank.train import evaluate_split, load_item_tables


class Ranker:
    """A trained model with its item tables, ready to score (frozen)."""

    def __init__(
        self,
        model: RankingModel,
        tables: ItemTables,
        spec: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        self.model, self.tables, self.spec, self.path = model, tables, spec, path
        self.model.eval()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ranker:
        """Load a model directory (or a training output holding `model/`), frozen."""
        return cls(*load_model(path))

    @property
    def max_history(self) -> int:
        return int(self.spec["train_config"]["max_history"])

    def check_sids(self, sids_path: str | os.PathLike[str]) -> None:
        """ArtifactError when `sids_path` is not the SID artifact this model was trained with."""
        from psrq.formats.sids import check_sids_source
        from psrq.rank.batches import check_sids_match

        if self.model.codebooks:
            check_sids_source(self.tables.sid_source, sids_path)
            check_sids_match(self.tables, sids_path)

    def evaluate(self, samples_path: str | os.PathLike[str]) -> dict[str, float]:
        table = read_table(samples_path)
        split = encode_samples(
            table,
            self.tables,
            max_history=self.max_history,
            name=Path(samples_path).stem,
            source=samples_path,
        )
        return evaluate_split(self.model, split)

    def score(
        self,
        history: list[str],
        candidates: list[str],
        *,
        new_sids: dict[str, dict[str, np.ndarray]] | None = None,
        new_content: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> list[dict[str, Any]]:
        """Score `candidates` for a user with `history` (item ids, oldest first); best first.

        Items the model never saw are scored from what is known about them: their semantic IDs
        (`new_sids[item_id] = {codebook: codes [n_levels]}`, from the frozen quantizer) and
        content (`new_content[item_id] = {modality: vector}`), with the shared OOV ID
        embedding. Unknown items with neither are scored with OOV features only (flagged).
        History longer than the model's maximum keeps the newest items; an empty history is valid.
        """
        if not candidates:
            raise InputError("no candidate items to score")
        new_sids, new_content = new_sids or {}, new_content or {}
        history = list(history)[-self.max_history :]
        rows_c = self.tables.rows_of(list(candidates))
        rows_h = self.tables.rows_of(history) if history else np.zeros(0, np.int64)
        known = rows_c != OOV
        model = self.model
        described_new = [
            i for i in dict.fromkeys([*history, *candidates]) if (i in new_sids or i in new_content)
        ]
        described_new = (
            [
                i
                for i, r in zip(described_new, self.tables.rows_of(described_new), strict=True)
                if r == OOV
            ]
            if described_new
            else []
        )
        if described_new:
            model, rows_c, rows_h = self._request_model(
                history, candidates, rows_c, rows_h, described_new, new_sids, new_content
            )
        hist = np.zeros((1, self.max_history), dtype=np.int64)
        hist[0, : len(rows_h)] = rows_h
        with torch.no_grad():
            logits = model(
                torch.from_numpy(rows_c), torch.from_numpy(hist)
            ).numpy()  # history [1, L], broadcast
        described = np.array([(c in new_sids) or (c in new_content) for c in candidates])
        order = np.argsort(-logits, kind="stable")
        return [
            {
                "item_id": candidates[i],
                "score": float(1 / (1 + np.exp(-logits[i]))),
                "logit": float(logits[i]),
                "status": "known"
                if known[i]
                else ("new (SIDs/content)" if described[i] else "unknown (OOV only)"),
            }
            for i in order
        ]

    def _request_model(
        self,
        history: list[str],
        candidates: list[str],
        rows_c: np.ndarray,
        rows_h: np.ndarray,
        unknown: list[str],
        new_sids: dict[str, dict[str, np.ndarray]],
        new_content: dict[str, dict[str, np.ndarray]],
    ) -> tuple[RankingModel, np.ndarray, np.ndarray]:
        """A per-request view of the model whose item tables hold only this request's items.

        Thread safety: the shared model is never modified (a service scores from many threads).
        The view shares every parameter with the model but has its own buffer dict, holding
        small tables: PAD, OOV, the request's known rows, then the described new items (ID row
        = OOV). Returns (view, candidate rows, history rows) in the small tables' numbering.
        """
        known_rows = np.unique(
            np.concatenate([rows_c, rows_h, [PAD_ROW, OOV]])
        )  # sorted: PAD, OOV first
        small = self.tables.subset(known_rows)
        sids = {
            cb: np.stack(
                [
                    np.asarray(new_sids.get(i, {}).get(cb, [-1] * len(sizes)), dtype=np.int64)
                    for i in unknown
                ]
            )
            for cb, sizes in small.sid_sizes.items()
        }
        content = {
            m: np.stack(
                [
                    np.asarray(
                        new_content.get(i, {}).get(m, np.zeros(X.shape[1])), dtype=np.float32
                    )
                    for i in unknown
                ]
            )
            for m, X in small.content.items()
        }
        small = small.with_new_items(unknown, sids, content)
        local = np.searchsorted(known_rows, np.concatenate([rows_c, rows_h]))
        new_row = {item: len(known_rows) + j for j, item in enumerate(unknown)}
        both = [*candidates, *history]
        local = np.array(
            [new_row.get(item, r) for item, r in zip(both, local.tolist(), strict=True)],
            dtype=np.int64,
        )
        view = copy.copy(self.model)
        view._buffers = dict(
            self.model._buffers
        )  # its own buffer dict: the model's stays untouched
        load_item_tables(view, small)
        return view, local[: len(candidates)], local[len(candidates) :]
