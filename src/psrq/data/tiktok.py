"""TikTok micro-videos with audio and image features (MMSSL's preprocessing): a real multimodal benchmark.

Read from a folder the user points at (e.g. ../shared/data/tiktok-mmssl); psrq never carries a
copy (research-only terms; cite MMSSL, Wei et al., WWW 2023). The folder holds:

* items.parquet: item_id, emb_audio (128 float32), emb_image (128 float32); no text.
* interactions.parquet: user_id, item_id, split ("train" / "valid" / "test", the authors' own
  split); every row an implicit positive; no timestamps.

The items' emb_<modality> columns become embeddings/audio.parquet and embeddings/image.parquet
(the format `psrq embed` writes), so quantize and rank use them as they are. The samples follow
"Data without timestamps" in docs/protocol.md (`build_given_split_samples`).
"""

from __future__ import annotations

from pathlib import Path

from psrq.errors import InputError

from .parquet_source import read_parquet_table
from .schema import (
    DataSet,
    embedding_modalities,
    precomputed_embeddings,
    validate_given_split_interactions,
    validate_items,
)

FILES = ("items.parquet", "interactions.parquet")
MODALITIES = ("audio", "image")


def tiktok_inputs(root: str | Path) -> list[Path]:
    return [Path(root) / f for f in FILES]


def load_tiktok(root: str | Path) -> DataSet:
    """Load the TikTok folder into the psrq schema (items without text, interactions with a split)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(
            f"TikTok folder not found: {base} (point --path at the folder holding {' and '.join(FILES)})"
        )
    items_path, inter_path = tiktok_inputs(base)
    items = read_parquet_table(items_path, "TikTok items file")
    missing = [m for m in MODALITIES if m not in embedding_modalities(items)]
    if missing:
        raise InputError(
            f"{items_path}: missing column(s) {', '.join('emb_' + m for m in missing)} "
            f"(found: {', '.join(items.column_names)})"
        )
    items, _ = validate_items(items, str(items_path))
    embeddings = precomputed_embeddings(items, str(items_path))
    interactions = validate_given_split_interactions(
        read_parquet_table(inter_path, "TikTok interactions file"),
        items.column("item_id"),
        str(inter_path),
    )
    # The vectors live in embeddings/<modality>.parquet; items.parquet keeps the IDs only.
    lean = items.select([c for c in items.column_names if not c.startswith("emb_")])
    return DataSet(
        name="tiktok",
        items=lean,
        interactions=interactions,
        sources=[items_path, inter_path],
        embeddings=dict(embeddings),
        default_label_rule="implicit",
        given_split=True,
    )
