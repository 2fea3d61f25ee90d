"""Real servers for the serving tests: `psrq serve` in a subprocess on a free loopback port.

Artifacts are SYNTHETIC (psrq.serve.synthetic: 300 items, k=8, 2 levels, rankers trained for
one epoch), built once per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_fixtures import (
    ADMIN_TOKEN,
    MAX_BATCH,
    MAX_BODY_MB,
    MAX_CANDIDATES,
    Server,
    start_server,
    stop_server,
)


@pytest.fixture(scope="session")
def serve_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from psrq.serve.synthetic import build_service_artifacts

    return build_service_artifacts(
        tmp_path_factory.mktemp("serve-artifacts"), n_items=300, n_users=150
    )


def _base_args(a: dict[str, Any]) -> list[str]:
    return ["--quantizer", str(a["quantizer"])]


@pytest.fixture(scope="session")
def full_server(
    serve_artifacts: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """MCCA ranker, text (MiniLM) and audio (musicnn) encoders, items, embeddings, admin token."""
    a = serve_artifacts
    args = [
        *_base_args(a),
        "--ranker",
        str(a["rankers"]["MCCA"]),
        "--items",
        str(a["items"]),
        "--embeddings",
        str(a["embeddings"]),
        "--text-encoder",
        "minilm",
        "--audio-encoder",
        "musicnn-msd",
        "--max-batch",
        str(MAX_BATCH),
        "--max-candidates",
        str(MAX_CANDIDATES),
        "--max-body-mb",
        str(MAX_BODY_MB),
    ]
    server = start_server(args, tmp_path_factory.mktemp("logs") / "full.log", token=ADMIN_TOKEN)
    yield server
    stop_server(server.process)


@pytest.fixture(scope="session")
def bare_server(
    serve_artifacts: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Quantizer only: no ranker, no encoders, no admin token."""
    server = start_server(_base_args(serve_artifacts), tmp_path_factory.mktemp("logs") / "bare.log")
    yield server
    stop_server(server.process)


@pytest.fixture
def reload_server(serve_artifacts: dict[str, Any], tmp_path: Path) -> Iterator[Server]:
    """MCCA ranker and an admin token, for tests that swap models."""
    a = serve_artifacts
    server = start_server(
        [*_base_args(a), "--ranker", str(a["rankers"]["MCCA"])],
        tmp_path / "reload.log",
        token=ADMIN_TOKEN,
    )
    yield server
    stop_server(server.process)


@pytest.fixture(scope="session")
def text_only_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, Any]]]:
    """One modality (text), as `psrq run` on Last.fm-2k builds: the ranker's joint SID is the text SID."""
    from psrq.serve.synthetic import build_service_artifacts

    a = build_service_artifacts(
        tmp_path_factory.mktemp("text-only"),
        n_items=200,
        n_users=80,
        models=("MCCA",),
        modalities=("text",),
    )
    server = start_server(
        ["--quantizer", str(a["quantizer"]), "--ranker", str(a["rankers"]["MCCA"])],
        tmp_path_factory.mktemp("logs") / "text-only.log",
    )
    yield server, a
    stop_server(server.process)
