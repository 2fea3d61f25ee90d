"""TikTok (MMSSL) loader and the protocol for data without timestamps.

The real folder is read from ../shared/data/tiktok-mmssl (or $PSRQ_TIKTOK_DIR); the project never
carries a copy. Tests on the protocol's rules use small SYNTHETIC folders in the same format.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.data.labels import LabelRule
from psrq.data.protocol import PROBE_TOLERANCE, ProtocolConfig, build_samples
from psrq.data.tiktok import load_tiktok
from psrq.errors import InputError

REPO = Path(__file__).resolve().parents[2]
TIKTOK = Path(os.environ.get("PSRQ_TIKTOK_DIR", REPO.parent / "shared" / "data" / "tiktok-mmssl"))
needs_tiktok = pytest.mark.skipif(
    not (TIKTOK / "interactions.parquet").is_file(),
    reason=f"the TikTok folder is not at {TIKTOK} (set PSRQ_TIKTOK_DIR to the folder holding items.parquet and interactions.parquet)",
)


def synthetic_tiktok(root: Path, n_users=30, n_items=40, seed=0) -> Path:
    """SYNTHETIC folder in the TikTok format: random interactions, random 8-d audio / 6-d image vectors."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs = {
        (int(u), int(i))
        for u, i in zip(rng.integers(0, n_users, 600), rng.integers(0, n_items, 600), strict=True)
    }
    users, items = zip(*sorted(pairs), strict=True)
    split = rng.choice(["train", "train", "train", "valid", "test"], len(users))
    pq.write_table(
        pa.table(
            {
                "user_id": [str(u) for u in users],
                "item_id": [str(i) for i in items],
                "split": split.tolist(),
            }
        ),
        root / "interactions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "item_id": [str(i) for i in range(n_items)],
                "emb_audio": pa.array(
                    rng.normal(size=(n_items, 8)).astype(np.float32).tolist(),
                    pa.list_(pa.float32(), 8),
                ),
                "emb_image": pa.array(
                    rng.normal(size=(n_items, 6)).astype(np.float32).tolist(),
                    pa.list_(pa.float32(), 6),
                ),
            }
        ),
        root / "items.parquet",
    )
    return root


def test_given_split_histories_are_the_users_other_training_positives(tmp_path):
    data = load_tiktok(synthetic_tiktok(tmp_path / "t"))
    k = 3
    samples = build_samples(
        data, ProtocolConfig(max_history=k, label_rule=LabelRule("implicit", n_negatives=2))
    )
    inter = data.interactions.to_pylist()
    train_pos = {}
    for r in inter:
        if r["split"] == "train":
            train_pos.setdefault(r["user_id"], set()).add(r["item_id"])
    before: dict[str, set[tuple[str, str]]] = {}  # one seeded order per user: pairs never disagree
    for split, table in samples.tables.items():
        for r in table.to_pylist():
            assert r["split"] == split and r["timestamp"] == 0
            others = train_pos.get(r["user_id"], set()) - {r["item_id"]}
            assert set(r["history"]) <= others and r["item_id"] not in r["history"]
            assert len(r["history"]) == min(k, len(others))
            pairs = before.setdefault(r["user_id"], set())
            h = r["history"]
            pairs.update((h[a], h[b]) for a in range(len(h)) for b in range(a + 1, len(h)))
    for pairs in before.values():
        assert not any((b, a) in pairs for a, b in pairs)


def test_given_split_negatives_come_from_the_same_splits_positives(tmp_path):
    data = load_tiktok(synthetic_tiktok(tmp_path / "t"))
    samples = build_samples(
        data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=3)
    )
    seen = {(r["user_id"], r["item_id"]) for r in data.interactions.to_pylist()}
    for table in samples.tables.values():
        rows = table.to_pylist()
        positives = {r["item_id"] for r in rows if r["label"] == 1}
        for r in rows:
            if r["label"] == 0:
                assert r["item_id"] in positives and (r["user_id"], r["item_id"]) not in seen
    again = build_samples(
        data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=3)
    )
    assert all(again.tables[s].equals(samples.tables[s]) for s in samples.tables)  # seeded
    stats = samples.stats
    assert stats["protocol"]["split"] == "given" and stats["boundaries"] == {}
    assert stats["splits"]["test"]["first_day"] is None


def test_bad_split_value_and_repeated_pair_are_named(tmp_path):
    root = synthetic_tiktok(tmp_path / "t")
    inter = pq.read_table(root / "interactions.parquet").to_pydict()
    inter["split"][4] = "validation"
    pq.write_table(pa.table(inter), root / "interactions.parquet")
    with pytest.raises(
        InputError,
        match=r"column split must be one of train, valid, test, got 'validation' at row 4",
    ):
        load_tiktok(root)
    inter["split"][4] = "train"
    for k in inter:
        inter[k].append(inter[k][0])
    pq.write_table(pa.table(inter), root / "interactions.parquet")
    with pytest.raises(InputError, match=r"appears more than once"):
        load_tiktok(root)


def test_missing_folder_or_modality_is_named(tmp_path):
    with pytest.raises(InputError, match="TikTok folder not found"):
        load_tiktok(tmp_path / "nowhere")
    root = synthetic_tiktok(tmp_path / "t")
    pq.write_table(
        pq.read_table(root / "items.parquet").drop_columns(["emb_image"]), root / "items.parquet"
    )
    with pytest.raises(InputError, match=r"items\.parquet: missing column\(s\) emb_image"):
        load_tiktok(root)


@needs_tiktok
def test_prepare_tiktok_writes_embedding_files_and_passes_the_probe(tmp_path):
    from psrq.data.prepare import prepare
    from psrq.data.specs import dataset_spec
    from psrq.formats.embeddings import read_embedding_parquet

    result = prepare(
        dataset_spec("tiktok", root=TIKTOK),
        ProtocolConfig(label_rule=LabelRule("auto")),
        tmp_path,
        verbose=False,
    )
    meta = result.meta
    assert meta["dataset"] == "tiktok" and meta["embeddings"] == ["audio", "image"]
    assert meta["items"] == 6_710 and meta["interactions"] == 68_722  # the README's counts
    splits = meta["splits"]
    assert {s: splits[s]["positives"] for s in splits} == {
        "train": 59_541,
        "valid": 3_051,
        "test": 6_130,
    }
    for m in ("audio", "image"):
        emb = read_embedding_parquet(tmp_path / "embeddings" / f"{m}.parquet", m)
        assert emb.X.shape == (6_710, 128)
    probe = meta["popularity_probe"]
    assert (
        abs(probe["valid"] - 0.5) <= PROBE_TOLERANCE and abs(probe["test"] - 0.5) <= PROBE_TOLERANCE
    ), probe
    assert (
        "emb_audio" not in pq.read_schema(tmp_path / "items.parquet").names
    )  # vectors live in embeddings/


def test_cli_prepare_tiktok_with_path_prints_the_probe(tmp_path):
    from typer.testing import CliRunner

    from psrq.cli import app

    root = synthetic_tiktok(tmp_path / "t")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["data", "prepare", "tiktok", "--path", str(root), "--out", str(out)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "popularity probe" in res.output
    assert (out / "embeddings" / "audio.parquet").is_file() and (
        out / "embeddings" / "image.parquet"
    ).is_file()
    res = CliRunner().invoke(app, ["data", "prepare", "tiktok", "--out", str(out)])
    assert res.exit_code != 0 and "needs --path DIR" in str(
        res.exception
    )  # psrq.cli.main prints it
