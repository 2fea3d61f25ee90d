"""Issue 9.4: the README's "new track with text only" commands run as written, end to end.

`psrq assign` with text only, then `psrq score --new-sids` crashed with an IndexError in
check_sids_match (the new track's all-null audio column was read with 0 levels).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from .helpers import write_embeddings

README = Path(__file__).resolve().parents[2] / "README.md"


def _new_track_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if "psrq assign" in b and "--new-sids" in b)
    lines = [line.split("#", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("psrq ")]


@pytest.mark.slow
def test_readme_new_track_text_only_scores(cli, tmp_path, monkeypatch):
    from psrq.rank.synthetic import make_synthetic_ranking_data

    # SYNTHETIC files at the paths the README names.
    paths = make_synthetic_ranking_data(
        tmp_path / "data",
        n_users=60,
        n_items=300,
        events_per_user=12,
        modalities=("text", "audio"),
        seed=0,
    )
    shutil.copytree(paths["embeddings"], tmp_path / "embeddings")
    text = pq.read_table(paths["emb_text"])
    write_embeddings(
        tmp_path / "new_items_text.parquet",
        ["new-track"],
        np.asarray(text.column("embedding")[0].as_py(), np.float32)[None] + 0.01,
    )
    monkeypatch.chdir(tmp_path)

    commands = _new_track_commands()
    assert [c[0] for c in commands] == ["quantize", "assign", "report", "train", "score"]
    for argv in commands:
        if argv[0] == "train":
            argv = [
                *argv,
                "--epochs",
                "2",
            ]  # the README trains to convergence; two epochs show the path
        if argv[0] == "score":
            argv = [*argv, "--out", "scores.json"]
        res = cli(*argv)
        assert res.code == 0, f"psrq {' '.join(argv)}: {res.err}"

    new = pq.read_table("new_sids.parquet")
    assert new.column("missing_modalities").to_pylist() == [["audio"]]
    scores = json.loads(Path("scores.json").read_text())
    status = {r["item_id"]: r["status"] for r in scores["ranked"]}
    assert status["new-track"] == "new (SIDs/content)"
    assert np.isfinite([r["score"] for r in scores["ranked"]]).all()
