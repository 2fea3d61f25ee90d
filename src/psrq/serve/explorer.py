"""The semantic-ID explorer's data: the quantizer's training items indexed by code prefix.

    index = ExplorerIndex.build(loaded)
    index.children("joint", [3])            # codes at level 2 under prefix (3,), with sizes
    index.items("joint", [3, 1])            # the items in that cluster, with titles
    index.detail("1234", "joint", k=10)     # code path, code-space and embedding-space neighbours

Items are the ones the quantizer was fitted on (its train_sids.parquet). Titles come from the
items file (`title` or `name` column) when the service has one; embedding-space neighbours come
from the embeddings directory when it has one, measured in the space each codebook's quantizer
encodes (normalised modality vectors; the weighted concatenation for the joint codebook).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psrq.formats.sids import JOINT
from psrq.serve.assign import RequestError

TITLE_COLUMNS = ("title", "name")


@dataclass
class ExplorerIndex:
    item_ids: np.ndarray  # object [n]
    position: dict[str, int]
    titles: np.ndarray | None  # object [n] or None
    codes: dict[str, np.ndarray]  # codebook -> int32 [n, n_levels]
    present: dict[str, np.ndarray]  # codebook -> bool [n]
    spaces: dict[
        str, tuple[np.ndarray, np.ndarray]
    ]  # codebook -> (rows into item_ids, unit vectors)
    synthetic: bool

    @classmethod
    def build(cls, loaded: Any) -> ExplorerIndex:
        sids = loaded.quantizer.train_sids_
        ids = sids.item_ids.astype(object)
        position = {str(v): i for i, v in enumerate(ids.tolist())}
        titles = _read_titles(loaded.spec.items, position, len(ids)) if loaded.spec.items else None
        spaces = _embedding_spaces(loaded, position) if loaded.spec.embeddings else {}
        synthetic = bool(getattr(loaded.quantizer, "synthetic_", False))
        return cls(ids, position, titles, dict(sids.codes), dict(sids.present), spaces, synthetic)

    # ---- browsing --------------------------------------------------------------------------
    def check_codebook(self, codebook: str) -> None:
        if codebook not in self.codes:
            raise RequestError(
                "codebook", f"unknown codebook {codebook!r}; known: {list(self.codes)}"
            )

    def _under(self, codebook: str, prefix: list[int]) -> np.ndarray:
        self.check_codebook(codebook)
        codes = self.codes[codebook]
        if len(prefix) > codes.shape[1]:
            raise RequestError(
                "prefix", f"has {len(prefix)} levels; codebook {codebook!r} has {codes.shape[1]}"
            )
        mask = self.present[codebook].copy()
        for level, c in enumerate(prefix):
            mask &= codes[:, level] == c
        return np.flatnonzero(mask)

    def children(self, codebook: str, prefix: list[int]) -> dict[str, Any]:
        rows = self._under(codebook, prefix)
        n_levels = self.codes[codebook].shape[1]
        level = len(prefix)
        children = []
        if level < n_levels and len(rows):
            values, counts = np.unique(self.codes[codebook][rows, level], return_counts=True)
            order = np.lexsort((values, -counts))
            children = [{"code": int(values[i]), "size": int(counts[i])} for i in order]
        return {
            "codebook": codebook,
            "prefix": prefix,
            "level": level,
            "n_levels": n_levels,
            "prefix_size": len(rows),
            "children": children,
        }

    def items(
        self, codebook: str, prefix: list[int], *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        rows = self._under(codebook, prefix)
        rows = rows[np.argsort(self.item_ids[rows].astype(str), kind="stable")]
        page = rows[offset : offset + limit]
        return {
            "codebook": codebook,
            "prefix": prefix,
            "total": len(rows),
            "items": [self._item(r, codebook) for r in page],
        }

    def search(self, query: str, *, limit: int = 20) -> list[dict[str, Any]]:
        q = query.strip().lower()
        if not q:
            raise RequestError("q", "empty query")
        hits = []
        if q in {k.lower() for k in self.position}:
            hits = [r for k, r in self.position.items() if k.lower() == q]
        if self.titles is not None:
            for r, t in enumerate(self.titles.tolist()):
                if len(hits) >= limit:
                    break
                if t and q in str(t).lower() and r not in hits:
                    hits.append(r)
        return [self._item(r, None) for r in hits[:limit]]

    def _item(self, row: int, codebook: str | None) -> dict[str, Any]:
        codes = None
        if codebook is not None and self.present[codebook][row]:
            codes = self.codes[codebook][row].tolist()
        return {"item_id": str(self.item_ids[row]), "title": self._title(row), "codes": codes}

    def _title(self, row: int) -> str | None:
        if self.titles is None or self.titles[row] is None:
            return None
        return str(self.titles[row])

    # ---- one item --------------------------------------------------------------------------
    def detail(self, item_id: str, codebook: str, *, k: int = 10) -> dict[str, Any]:
        self.check_codebook(codebook)
        row = self.position.get(item_id)
        if row is None:
            raise RequestError(
                "item_id",
                f"item {item_id!r} is not among the quantizer's {len(self.item_ids)} training items",
                status=404,
            )
        codes = {
            cb: (c[row].tolist() if self.present[cb][row] else None) for cb, c in self.codes.items()
        }
        return {
            "item_id": item_id,
            "title": self._title(row),
            "codes": codes,
            "codebook": codebook,
            "code_neighbours": self._code_neighbours(row, codebook, k),
            "embedding_neighbours": self._embedding_neighbours(row, codebook, k),
            "embedding_space": self._space_name(codebook),
        }

    def _code_neighbours(self, row: int, codebook: str, k: int) -> list[dict[str, Any]]:
        """Items sharing the longest code prefix with `row` (ties: by item ID)."""
        if not self.present[codebook][row]:
            return []
        codes = self.codes[codebook]
        same = codes == codes[row][None, :]
        shared = np.cumprod(same, axis=1).sum(axis=1)
        shared[~self.present[codebook]] = -1
        shared[row] = -1
        order = np.lexsort((self.item_ids.astype(str), -shared))[:k]
        return [
            {
                "item_id": str(self.item_ids[r]),
                "title": self._title(r),
                "shared_levels": int(shared[r]),
            }
            for r in order
            if shared[r] >= 0
        ]

    def _embedding_neighbours(self, row: int, codebook: str, k: int) -> list[dict[str, Any]]:
        if codebook not in self.spaces:
            return []
        rows, X = self.spaces[codebook]
        where = np.flatnonzero(rows == row)
        if not len(where):
            return []
        sims = X @ X[where[0]]
        sims[where[0]] = -np.inf
        top = np.argsort(-sims, kind="stable")[:k]
        return [
            {
                "item_id": str(self.item_ids[rows[j]]),
                "title": self._title(int(rows[j])),
                "cosine": round(float(sims[j]), 4),
            }
            for j in top
        ]

    def _space_name(self, codebook: str) -> str | None:
        if codebook not in self.spaces:
            return None
        if codebook == JOINT:
            return "cosine in the joint quantizer's input (weighted concatenation of normalised modality vectors)"
        return f"cosine between normalised {codebook} embeddings"

    def summary(self) -> dict[str, Any]:
        return {
            "codebooks": list(self.codes),
            "n_levels": {cb: int(c.shape[1]) for cb, c in self.codes.items()},
            "n_items": len(self.item_ids),
            "has_titles": self.titles is not None,
            "has_embeddings": bool(self.spaces),
            "synthetic": self.synthetic,
        }

    def cluster_sizes_png(self) -> bytes:
        """The ID report's cluster-size figure (sorted code sizes per level, one line per codebook)."""
        from psrq.report import plots
        from psrq.report.html import figure_png

        fig = plots.cluster_sizes_figure({cb: c[self.present[cb]] for cb, c in self.codes.items()})
        return figure_png(fig, dpi=80)


def _read_titles(path: str, position: dict[str, int], n: int) -> np.ndarray | None:
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    column = next((c for c in TITLE_COLUMNS if c in schema.names), None)
    if column is None or "item_id" not in schema.names:
        return None
    table = pq.read_table(path, columns=["item_id", column])
    titles = np.full(n, None, dtype=object)
    for item_id, title in zip(
        table.column("item_id").to_pylist(), table.column(column).to_pylist(), strict=True
    ):
        r = position.get(str(item_id))
        if r is not None:
            titles[r] = title
    return titles


def _embedding_spaces(
    loaded: Any, position: dict[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from psrq.formats.embeddings import read_embedding_parquet

    folder = Path(loaded.spec.embeddings)
    inputs = {
        m: read_embedding_parquet(folder / f"{m}.parquet", m)
        for m in loaded.modalities
        if (folder / f"{m}.parquet").is_file()
    }
    if not inputs:
        return {}
    spaces = {}
    for cb, (ids, X) in loaded.quantizer.quantizer_inputs(inputs).items():
        rows = np.array([position.get(str(i), -1) for i in ids.tolist()], dtype=np.int64)
        keep = rows >= 0
        Xk = np.asarray(X[keep], dtype=np.float32)
        Xk = Xk / np.maximum(np.linalg.norm(Xk, axis=1, keepdims=True), 1e-12)
        spaces[cb] = (rows[keep], Xk)
    return spaces
