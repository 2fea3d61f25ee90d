"""Export a trained ranker, item tables included, as ONNX or TorchScript.

    path = export_ranker("runs/lastfm2k/rank/mcca_psrq/seed0", "mcca.onnx", fmt="onnx")

The exported graph has two inputs, `target` int64 [B] (item rows) and `history` int64 [B, L]
(item rows, 0 = padding), and one output `logits` float32 [B]: exactly `model(target, history)`.
Item rows are those of the model directory's items.json (row = 2 + position; 0 = padding,
1 = unknown). Every item table (item -> ID row, SIDs, content) is a constant of the graph.

The one change for export: `SIDEmbedding` sums its levels with an `nn.EmbeddingBag` whose
`padding_idx` ONNX cannot express, so the exported copy gathers the same rows with
`F.embedding` and multiplies by the (codes > 0) mask: same numbers, no in-place ops.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from psrq.errors import InputError
from psrq.rank.layers import SIDEmbedding

FORMATS = ("onnx", "torchscript")


class GatherSumSIDEmbedding(nn.Module):
    """Export-friendly twin of `SIDEmbedding` sharing its weights: codes [..., n_levels] -> [..., d]."""

    def __init__(self, source: SIDEmbedding) -> None:
        super().__init__()
        self.weight = source.table.weight
        self.register_buffer("offsets", source.offsets.clone(), persistent=False)
        self.n_levels, self.dim = source.n_levels, source.dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        present = codes > 0
        index = torch.where(present, codes + self.offsets, torch.zeros_like(codes))
        rows = nn.functional.embedding(index, self.weight)  # [..., n_levels, d]
        return (rows * present.unsqueeze(-1).to(rows.dtype)).sum(dim=-2)


def exportable(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` with every SIDEmbedding replaced by GatherSumSIDEmbedding."""
    clone = copy.deepcopy(model).eval()
    for name, module in list(clone.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, SIDEmbedding):
                setattr(module, child_name, GatherSumSIDEmbedding(child))
        del name
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def example_inputs(
    n_items: int, max_history: int, batch: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, max(n_items, 3), (batch,), generator=g)
    history = torch.randint(0, max(n_items, 3), (batch, max_history), generator=g)
    history[:, -2:] = 0  # some padding
    return target, history


def export_model(
    model: nn.Module, out: str | os.PathLike[str], *, fmt: str, n_items: int, max_history: int
) -> Path:
    """Write `model` (forward(target, history) -> logits) as ONNX or TorchScript to `out`."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = exportable(model)
    target, history = example_inputs(n_items, max_history)
    tmp = out.with_name(out.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / legacy-exporter deprecation chatter
        if fmt == "torchscript":
            traced = torch.jit.trace(module, (target, history), check_trace=False)
            traced.save(str(tmp))
        else:
            torch.onnx.export(
                module,
                (target, history),
                str(tmp),
                input_names=["target", "history"],
                output_names=["logits"],
                dynamic_axes={
                    "target": {0: "batch"},
                    "history": {0: "batch", 1: "history_len"},
                    "logits": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
    os.replace(tmp, out)
    return out


def export_ranker(
    model_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, fmt: str
) -> dict[str, Any]:
    """Export a ranker model directory; writes `out` and `out`.json (inputs, item rows, source)."""
    from psrq.serve.loaded import manifest_fingerprint
    from psrq.serve.ranker import Ranker

    ranker = Ranker.load(model_dir)
    path = export_model(
        ranker.model, out, fmt=fmt, n_items=ranker.tables.n_items, max_history=ranker.max_history
    )
    info = {
        "format": fmt,
        "model": ranker.spec["model"],
        "source": str(ranker.path),
        "source_fingerprint": manifest_fingerprint(ranker.path),
        "inputs": {
            "target": "int64 [batch] item rows",
            "history": "int64 [batch, history_len] item rows, 0 = padding",
        },
        "outputs": {"logits": "float32 [batch]"},
        "max_history": ranker.max_history,
        "item_rows": "row = 2 + index in items.json of the model directory; 0 = padding, 1 = unknown item",
        "n_items": int(ranker.tables.n_items),
    }
    Path(str(path) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "path": str(path)}


def onnx_logits(
    path: str | os.PathLike[str], target: np.ndarray, history: np.ndarray
) -> np.ndarray:
    """Run an exported ONNX ranker with onnxruntime (one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(
        ["logits"], {"target": target.astype(np.int64), "history": history.astype(np.int64)}
    )[0]
