"""The examples in the help of `psrq quantize / assign / report / train / evaluate / score` run
for real, in order, on tiny SYNTHETIC files placed at the paths they name.

(The other commands' examples read data sets or models that are not in the repository; their
examples are parsed with every value checked in test_cli_help.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from psrq.cli import app

from .cli_examples import help_examples

pytestmark = pytest.mark.usefixtures("single_faiss_thread")


@pytest.fixture(scope="module")
def single_faiss_thread():
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _run_all(examples: list[list[str]]) -> None:
    for argv in examples:
        if "..." in argv:
            continue  # an elided example shows one option only
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, f"psrq {' '.join(argv)}: {result.output}{result.exception!r}"


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """SYNTHETIC [n, dim] float32 rows around 12 seeded blob centres."""
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(12, dim))[rng.integers(0, 12, n)] * 3 + rng.normal(size=(n, dim)) * 0.5
    ).astype(np.float32)


def _column(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1])


def _embeddings(path: Path, ids: list[str], x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"item_id": pa.array(ids, pa.string()), "embedding": _column(x)})
    pq.write_table(table.replace_schema_metadata({"psrq.synthetic": "true"}), path)


@pytest.mark.slow
def test_quantize_assign_report_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ids = [f"synthetic-{i:04d}" for i in range(300)]
    text, audio = _vectors(300, 16, 0), _vectors(300, 8, 1)
    _embeddings(tmp_path / "embeddings/text.parquet", ids, text)
    _embeddings(tmp_path / "embeddings/audio.parquet", ids, audio)
    new_ids = [f"synthetic-new-{i}" for i in range(20)]
    _embeddings(tmp_path / "new/text.parquet", new_ids, _vectors(20, 16, 2))
    _embeddings(tmp_path / "new/audio.parquet", new_ids, _vectors(20, 8, 3))
    np.save(tmp_path / "text.npy", text)
    (tmp_path / "text_ids.txt").write_text("\n".join(ids) + "\n")
    items = pa.table(
        {
            "item_id": ids,
            "text": ["SYNTHETIC"] * 300,
            "emb_text": _column(text),
            "emb_audio": _column(audio),
        }
    )
    pq.write_table(
        items.replace_schema_metadata({"psrq.synthetic": "true"}), tmp_path / "items.parquet"
    )

    examples = [
        *help_examples(["quantize"]),
        *help_examples(["assign"]),
        *help_examples(["report"]),
    ]
    assert len(examples) >= 6
    _run_all(examples)
    assert (tmp_path / "models/sids/manifest.json").is_file() and (
        tmp_path / "new_sids.parquet"
    ).is_file()
    assert any((tmp_path / "reports/sids").iterdir())


@pytest.mark.slow
def test_train_evaluate_score_examples_run(tmp_path, monkeypatch):
    # tests/ is on sys.path under pytest (rootdir conftest), so the ranking tests' helper imports
    from psrq.rank.synthetic import make_synthetic_ranking_data

    monkeypatch.chdir(tmp_path)
    data = make_synthetic_ranking_data(
        tmp_path / "data",
        n_users=40,
        n_items=120,
        events_per_user=10,
        modalities=("text", "audio"),
        seed=0,
    )
    for target in ("runs/lastfm2k/data", "data"):
        (tmp_path / target).mkdir(parents=True, exist_ok=True)
    shutil.copytree(data["samples"], tmp_path / "runs/lastfm2k/data/samples")
    shutil.copy(data["sids"], tmp_path / "runs/lastfm2k/sids.parquet")
    shutil.copy(data["sids"], tmp_path / "sids.parquet")
    shutil.copytree(data["embeddings"], tmp_path / "embeddings")
    sids = pq.read_table(data["sids"])
    new = sids.slice(0, 1).set_column(0, "item_id", pa.array(["new_artist"], pa.string()))
    pq.write_table(new.replace_schema_metadata(sids.schema.metadata), tmp_path / "new_sids.parquet")
    (tmp_path / "hist.txt").write_text("syn_item_1\nsyn_item_2\n")

    examples = [*help_examples(["train"]), *help_examples(["evaluate"]), *help_examples(["score"])]
    assert len(examples) >= 7
    _run_all(examples)
    for written in ["runs/mcca", "runs/din-psrq", "runs/vbpr", "valid.json", "scores.json"]:
        assert (tmp_path / written).exists(), written
