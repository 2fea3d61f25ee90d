"""Fixtures for the safety tests: the real `psrq` entry point run in-process, SYNTHETIC files."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytest

from .helpers import write_embeddings


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `psrq ARGS` through psrq.cli.main (the console script): exit code, stdout, stderr.

    Any exception other than SystemExit propagates, so a traceback fails the test.
    """
    from psrq.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["psrq", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def emb_files(tmp_path_factory):
    """SYNTHETIC text and audio embeddings of 300 items (16-d, seeded)."""
    root = tmp_path_factory.mktemp("emb")
    rng = np.random.default_rng(0)
    ids = [f"it{i:03d}" for i in range(300)]
    return {
        "text": write_embeddings(root / "text.parquet", ids, rng.normal(size=(300, 16))),
        "audio": write_embeddings(root / "audio.parquet", ids, rng.normal(size=(300, 8))),
        "ids": ids,
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """SYNTHETIC ranking data + an MCCA trained 1 epoch on it (via the library)."""
    from psrq.rank.synthetic import make_synthetic_ranking_data
    from psrq.rank.train import TrainConfig, load_ranking_data, train_model

    root = tmp_path_factory.mktemp("trained")
    paths = make_synthetic_ranking_data(
        root / "data",
        n_users=40,
        n_items=80,
        events_per_user=10,
        modalities=("text", "audio"),
        seed=0,
    )
    data = load_ranking_data(paths["samples"], sids=paths["sids"])
    train_model(
        data,
        TrainConfig(model="MCCA", epochs=1, dim=8, batch_size=128),
        out=root / "run",
        progress=False,
    )
    return {**paths, "run": root / "run"}


@pytest.fixture(scope="session")
def sid_run(tmp_path_factory):
    """SYNTHETIC ranking data; PSRQ and RQ-KMeans quantizers fitted on its embeddings; MCCA
    trained one epoch on the PSRQ IDs. `new_sids(method, ids, seed=0)` assigns new items."""
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.rank.synthetic import make_synthetic_ranking_data
    from psrq.rank.train import TrainConfig, load_ranking_data, train_model

    root = tmp_path_factory.mktemp("sid_run")
    paths = make_synthetic_ranking_data(
        root / "data",
        n_users=40,
        n_items=80,
        events_per_user=10,
        modalities=("text", "audio"),
        seed=0,
    )
    mods = {m: read_embedding_parquet(paths[f"emb_{m}"], m) for m in ("text", "audio")}
    models = {}
    for method, seed in (("PSRQ", 0), ("RQKMeans", 0), ("PSRQ", 1)):
        mq = MultimodalQuantizer(
            method=method, params={"n_levels": 2, "codebook_size": 4}, seed=seed
        )
        sids = mq.fit_transform(mods)
        name = f"{method}-{seed}"
        mq.save(root / name)
        sids.write(root / f"{name}.parquet")
        models[name] = mq
    data = load_ranking_data(paths["samples"], sids=root / "PSRQ-0.parquet")
    train_model(
        data,
        TrainConfig(model="MCCA", epochs=1, dim=8, batch_size=128),
        out=root / "run",
        progress=False,
    )

    def new_sids(name: str, ids: list[str], out: str) -> str:
        X = mods["text"].X[: len(ids)] + 0.01
        path = root / out
        models[name].transform({"text": (np.asarray(ids, dtype=object), X)}).write(path)
        return str(path)

    return {
        **paths,
        "root": root,
        "run": root / "run",
        "sids": root / "PSRQ-0.parquet",
        "new_sids": new_sids,
    }
