"""`psrq run --config` on your own Parquet pair whose items carry precomputed emb_<modality> columns
and no text at all (a team with in-house audio and image embeddings), end to end.

The data is SYNTHETIC (seeded; every ID says so) and tiny, so the whole pipeline runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner


def write_byo_pair(
    root: Path, n_items: int = 80, n_users: int = 40, seed: int = 0
) -> tuple[Path, Path]:
    """SYNTHETIC items (emb_audio 8-d, emb_image 6-d, no text) and implicit interactions over 60 days.

    Users prefer one of 4 item groups, and the groups show in both modalities, so the IDs mean something.
    """
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 4, n_items)
    audio = rng.normal(size=(4, 8))[group] + 0.3 * rng.normal(size=(n_items, 8))
    image = rng.normal(size=(4, 6))[group] + 0.3 * rng.normal(size=(n_items, 6))
    audio_cells: list[list[float] | None] = audio.astype(np.float32).tolist()
    audio_cells[3] = (
        None  # one item without audio: it gets null audio codes, its joint ID imputes them
    )
    items = pa.table(
        {
            "item_id": [f"synthetic-item-{i:03d}" for i in range(n_items)],
            "emb_audio": pa.array(audio_cells, pa.list_(pa.float32())),
            "emb_image": pa.array(image.astype(np.float32).tolist(), pa.list_(pa.float32())),
        }
    )
    taste = rng.integers(0, 4, n_users)
    rows = set()
    for u in range(n_users):
        liked = np.flatnonzero(group == taste[u])
        for i in rng.choice(liked, size=min(12, len(liked)), replace=False):
            rows.add((u, int(i), 1_700_000_000 + int(rng.integers(0, 60)) * 86_400))
    users, item_idx, ts = zip(*sorted(rows), strict=True)
    interactions = pa.table(
        {
            "user_id": [f"synthetic-user-{u:03d}" for u in users],
            "item_id": [f"synthetic-item-{i:03d}" for i in item_idx],
            "timestamp": pa.array(ts, pa.int64()),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(items, root / "items.parquet")
    pq.write_table(interactions, root / "interactions.parquet")
    return root / "items.parquet", root / "interactions.parquet"


@pytest.mark.slow
def test_run_on_precomputed_modalities_without_text(tmp_path: Path) -> None:
    from psrq.cli import app

    items, interactions = write_byo_pair(tmp_path / "byo")
    out = tmp_path / "run"
    config = tmp_path / "byo.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "out": str(out),
                "dataset": {
                    "name": "parquet",
                    "items": str(items),
                    "interactions": str(interactions),
                },
                "quantize": {
                    "methods": [
                        {"name": "psrq", "method": "PSRQ", "n_levels": 2, "codebook_size": 4}
                    ]
                },
                "rank": {
                    "models": ["mcca", "din"],
                    "seeds": 1,
                    "epochs": 1,
                    "dim": 8,
                    "batch_size": 128,
                },
            }
        )
    )
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    # modalities inferred from the emb_ columns; nothing encoded text
    assert sorted(p.name for p in (out / "embeddings").glob("*.parquet")) == [
        "audio.parquet",
        "image.parquet",
    ]
    sids = pq.read_table(out / "sids" / "psrq.parquet")
    assert {"sid_audio", "sid_image", "sid_joint"} <= set(sids.column_names)
    assert sids.column("sid_audio").null_count == 1 and sids.column("sid_joint").null_count == 0
    metrics = json.loads((out / "rank" / "mcca-psrq" / "seed0" / "metrics.json").read_text())[
        "metrics"
    ]
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    assert (out / "rank" / "din" / "seed0" / "metrics.json").is_file()
    html = (out / "report.html").read_text()
    assert "popularity probe" in html


def test_modalities_can_be_chosen_and_unknown_ones_are_named(tmp_path: Path) -> None:
    from psrq.config import load_config
    from psrq.errors import ConfigError
    from psrq.pipeline import plan_modalities

    cfg = load_config(overrides={"features": {"modalities": ["image"]}})
    assert plan_modalities(cfg, ["audio", "image"], ["item_id"]) == [("image", "precomputed")]
    inferred = load_config()
    assert plan_modalities(inferred, ["audio", "image"], ["item_id", "text"]) == [
        ("audio", "precomputed"),
        ("image", "precomputed"),
        ("text", "text"),
    ]
    assert plan_modalities(inferred, [], ["item_id", "text"]) == [
        ("text", "text")
    ]  # Last.fm: as before
    with pytest.raises(
        ConfigError,
        match=r"features.modalities: 'text' is not available; this data set has \['audio', 'image'\]",
    ):
        plan_modalities(
            load_config(overrides={"features": {"modalities": ["text"]}}),
            ["audio", "image"],
            ["item_id"],
        )
    with pytest.raises(ConfigError, match="already carry precomputed audio"):
        plan_modalities(
            load_config(overrides={"features": {"audio_model": "musicnn-msd"}}),
            ["audio"],
            ["item_id"],
        )


def test_text_backend_is_part_of_the_embed_text_fingerprint(tmp_path: Path) -> None:
    """Switching features.text_backend re-embeds (int8 vectors are not torch's); torch keeps the
    fingerprint runs had before backends existed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from psrq.config import load_config
    from psrq.pipeline import RunState, _embedding_stages
    from psrq.run_layout import RunPaths

    paths = RunPaths(tmp_path)
    paths.data.mkdir(parents=True)
    pq.write_table(pa.table({"item_id": ["a"], "text": ["x"]}), paths.data / "items.parquet")

    def embed_text_settings(backend: str) -> dict:
        stages: list = []
        runner = type("Runner", (), {"run": lambda self, stage: stages.append(stage)})()
        config = load_config(overrides={"features": {"text_backend": backend}})
        _embedding_stages(config, paths, RunState(data_meta={"fingerprint": "fp"}), runner)
        (stage,) = stages
        return stage.settings

    assert embed_text_settings("torch") == {"data": "fp", "model": "minilm", "column": "text"}
    assert embed_text_settings("onnx-int8")["backend"] == "onnx-int8"
