"""Issue 9.5: every behaviour-deciding file of a model directory is covered, the manifest too;
checkpoints load with weights_only=True."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from psrq.artifacts import MANIFEST_DIGEST, manifest_digest, read_model_dir, sha256_file
from psrq.errors import ArtifactError


def test_editing_the_quantizer_manifest_normalize_is_detected(sid_run, tmp_path):
    import shutil

    from psrq.quantize.multimodal import MultimodalQuantizer

    model = tmp_path / "m"
    shutil.copytree(sid_run["root"] / "PSRQ-0", model)
    MultimodalQuantizer.load(model)  # intact: loads
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["fitted"]["normalize"]["text"] == "l2"
    manifest["fitted"]["normalize"]["text"] = "none"  # would silently change the codes of new items
    (model / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ArtifactError, match=r"manifest\.json was modified after it was written"):
        MultimodalQuantizer.load(model)


def test_a_manifest_without_its_digest_is_refused(sid_run, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(sid_run["root"] / "PSRQ-0", model)
    manifest = json.loads((model / "manifest.json").read_text())
    del manifest[MANIFEST_DIGEST]
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"has no {MANIFEST_DIGEST}"):
        read_model_dir(model)


def test_every_file_of_a_model_directory_is_listed(sid_run):
    for root in (
        sid_run["root"] / "PSRQ-0",
        Path(sid_run["run"]) / "model",
        Path(sid_run["run"]) / "checkpoint",
    ):
        manifest = read_model_dir(root)
        on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {
            "manifest.json"
        }
        assert on_disk == set(manifest["files"]), root
        for name, digest in manifest["files"].items():
            assert sha256_file(root / name) == digest


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PSRQ_TEST_PWNED']}",))


def _reseal(root: Path, name: str) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(root / name)
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_checkpoint_with_pickled_code_is_refused_not_run(sid_run, tmp_path, monkeypatch):
    """Even a checkpoint whose manifest was re-sealed cannot run code: weights_only=True."""
    import shutil

    from psrq.rank.train import TrainConfig, load_ranking_data, train_model

    run = tmp_path / "run"
    shutil.copytree(sid_run["run"], run)
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("PSRQ_TEST_PWNED", str(pwned))
    blob = torch.load(run / "checkpoint" / "checkpoint.pt", weights_only=True)
    blob["state"]["extra"] = _RunsCode()
    torch.save(blob, run / "checkpoint" / "checkpoint.pt")
    _reseal(run / "checkpoint", "checkpoint.pt")
    data = load_ranking_data(sid_run["samples"], sids=sid_run["sids"])
    with pytest.raises(ArtifactError, match="weights_only"):
        train_model(
            data,
            TrainConfig(model="MCCA", epochs=2, dim=8, batch_size=128),
            out=run,
            resume=True,
            progress=False,
        )
    assert not pwned.exists()


def test_model_weights_with_pickled_code_are_refused(sid_run, tmp_path, monkeypatch):
    import shutil

    from psrq.serve.ranker import Ranker

    run = tmp_path / "run"
    shutil.copytree(sid_run["run"], run)
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("PSRQ_TEST_PWNED", str(pwned))
    torch.save({"w": _RunsCode(), "x": torch.from_numpy(np.zeros(1))}, run / "model" / "weights.pt")
    _reseal(run / "model", "weights.pt")
    with pytest.raises(ArtifactError, match="weights_only"):
        Ranker.load(run)
    assert not pwned.exists()
