"""`psrq export`: ONNX (run by onnxruntime) and TorchScript give PyTorch's logits (SYNTHETIC rankers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # starts real servers / trains or exports models


def samples(
    n_items: int, max_history: int, n: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """1,000 (target, history) pairs: known and OOV rows, histories of every length (0 = padding)."""
    rng = np.random.default_rng(seed)
    target = rng.integers(1, n_items, size=n)
    history = rng.integers(1, n_items, size=(n, max_history))
    lengths = rng.integers(0, max_history + 1, size=n)
    history[np.arange(max_history)[None, :] >= lengths[:, None]] = 0
    return target.astype(np.int64), history.astype(np.int64)


@pytest.mark.parametrize("model", ["MCCA", "DIN", "VBPR"])
def test_onnx_and_torchscript_match_pytorch(
    serve_artifacts: dict[str, Any], tmp_path: Path, model: str
) -> None:
    from psrq.serve.export import export_ranker, onnx_logits
    from psrq.serve.ranker import Ranker

    model_dir = serve_artifacts["rankers"][model]
    ranker = Ranker.load(model_dir)
    target, history = samples(ranker.tables.n_items, ranker.max_history)
    with torch.no_grad():
        want = ranker.model(torch.from_numpy(target), torch.from_numpy(history)).numpy()

    info = export_ranker(model_dir, tmp_path / "m.onnx", fmt="onnx")
    got = onnx_logits(info["path"], target, history)
    assert got.shape == (1000,)
    assert float(np.abs(got - want).max()) < 1e-5
    # a shorter history and a batch of one: the graph's axes are dynamic
    one = onnx_logits(info["path"], target[:1], history[:1, :7])
    with torch.no_grad():
        ref = ranker.model(torch.from_numpy(target[:1]), torch.from_numpy(history[:1, :7])).numpy()
    assert float(np.abs(one - ref).max()) < 1e-5
    assert json.loads(Path(info["path"] + ".json").read_text())["model"] == model

    ts = export_ranker(model_dir, tmp_path / "m.pt", fmt="torchscript")
    loaded = torch.jit.load(ts["path"])
    with torch.no_grad():
        got_ts = loaded(torch.from_numpy(target), torch.from_numpy(history)).numpy()
    assert float(np.abs(got_ts - want).max()) < 1e-5


def test_onnx_graph_has_no_inplace_ops_and_tables_inside(
    serve_artifacts: dict[str, Any], tmp_path: Path
) -> None:
    import onnx

    from psrq.serve.export import export_ranker

    info = export_ranker(serve_artifacts["rankers"]["MCCA"], tmp_path / "m.onnx", fmt="onnx")
    graph = onnx.load(info["path"]).graph
    assert [i.name for i in graph.input] == ["target", "history"]
    assert [o.name for o in graph.output] == ["logits"]
    ops = {n.op_type for n in graph.node}
    assert (
        "ScatterND" not in ops and "ScatterElements" not in ops
    )  # what in-place index writes export to
    sizes = {tuple(t.dims) for t in graph.initializer}
    assert any(
        d and d[0] == info["n_items"] for d in sizes
    )  # item tables are constants of the graph


def test_export_cli(serve_artifacts: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from psrq.cli import app

    out = tmp_path / "din.onnx"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--model",
            str(serve_artifacts["rankers"]["DIN"]),
            "--format",
            "onnx",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.stat().st_size > 1000
    bad = CliRunner().invoke(
        app,
        [
            "export",
            "--model",
            str(serve_artifacts["rankers"]["DIN"]),
            "--format",
            "tflite",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code != 0 and "unknown export format" in str(bad.exception)
