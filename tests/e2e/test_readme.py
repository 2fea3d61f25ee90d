"""The README's examples run as written, so the docs cannot rot.

Python blocks are executed in order in one namespace (as a reader would paste them). Bash blocks:
every `psrq ...` line must name a real command and parse with every option value converted
(fast, cli_examples.py), and (slow) the lines run for real, in order, in one directory, on tiny
data standing in for the files they name: SYNTHETIC embeddings, and a slice of the built-in
Last.fm-2k for `psrq data prepare lastfm2k` (the full pipeline runs in test_end_to_end.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from .cli_examples import ExampleError, parse_example

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _psrq_commands(blocks: list[str] | None = None) -> list[list[str]]:
    commands = []
    for block in _blocks("bash") if blocks is None else blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("psrq "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_has_the_two_setup_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = _blocks("python")
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)


@pytest.mark.parametrize("argv", _psrq_commands(), ids=lambda a: " ".join(a[:2]))
def test_readme_cli_examples_parse(argv: list[str]) -> None:
    from psrq.cli import app

    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"psrq {' '.join(argv)}: {result.output}"
    assert "Usage" in result.output
    # --help stops the parser before values are converted; this converts and checks every one.
    try:
        parse_example(argv)
    except ExampleError as e:
        pytest.fail(f"README example `psrq {' '.join(argv)}` does not parse: {e}")


def _write_embeddings(path: Path, ids: list[str], dim: int, seed: int) -> None:
    """SYNTHETIC embeddings/<modality>.parquet (docs/conventions.md) around 12 seeded blob centres."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    x = (
        rng.normal(size=(12, dim))[rng.integers(0, 12, len(ids))] * 3
        + rng.normal(size=(len(ids), dim)) * 0.5
    )
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(x.astype(np.float32).ravel(), pa.float32()), dim
    )
    meta = {"psrq.encoder": "synthetic", "psrq.dim": str(dim), "psrq.synthetic": "true"}
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"item_id": pa.array(ids, pa.string()), "embedding": emb})
    pq.write_table(table.replace_schema_metadata(meta), path)


def _lastfm_slice(out: Path, every: int, n_artists: int) -> Path:
    """A slice of the built-in Last.fm-2k (real data): every `every`-th user's tag events on the
    `n_artists` artists those users tag most (few artists: embedding them stays quick)."""
    from collections import Counter

    from psrq.data.lastfm2k import FILES, builtin_root

    src = builtin_root()
    out.mkdir(parents=True)
    header, *rows = (src / "user_taggedartists.dat").read_text(encoding="utf-8").splitlines()
    users = [r for r in rows if int(r.split("\t")[0]) % every == 0]
    top = {a for a, _ in Counter(r.split("\t")[1] for r in users).most_common(n_artists)}
    kept = [r for r in users if r.split("\t")[1] in top]
    (out / "user_taggedartists.dat").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    artists = {r.split("\t")[1] for r in kept}
    header, *rows = (src / "artists.dat").read_text(encoding="utf-8").splitlines()
    lines = [header, *(r for r in rows if r.split("\t")[0] in artists)]
    (out / "artists.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "tags.dat").write_bytes((src / "tags.dat").read_bytes())
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    return out


@pytest.mark.slow
def test_readme_cli_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from psrq.cli import app
    from psrq.data import lastfm2k

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PSRQ_CACHE_DIR", str(tmp_path / "cache"))
    ids = [f"synthetic-{i:04d}" for i in range(300)]
    _write_embeddings(tmp_path / "embeddings" / "text.parquet", ids, 16, seed=0)
    _write_embeddings(tmp_path / "embeddings" / "audio.parquet", ids[:260], 8, seed=1)
    _write_embeddings(
        tmp_path / "new_items_text.parquet", [f"synthetic-new-{i}" for i in range(20)], 16, seed=2
    )
    lastfm = _lastfm_slice(tmp_path / "lastfm-2k-slice", every=4, n_artists=400)
    monkeypatch.setattr(lastfm2k, "builtin_root", lambda: lastfm)

    # The tour's block (its train/score lines need ranking samples of its own: they run in
    # tests/safety/test_readme_new_track.py) and the step-by-step Last.fm block. The serving and
    # Ray/DDP lines are parsed above and run by tests/serve and tests/engines.
    tour = next(b for b in _blocks("bash") if "psrq assign" in b)
    step_by_step = next(b for b in _blocks("bash") if "data prepare lastfm2k" in b)
    commands = [
        c for c in _psrq_commands([tour]) if c[0] not in ("train", "score")
    ] + _psrq_commands([step_by_step])
    assert len(commands) >= 8
    for argv in commands:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, f"psrq {' '.join(argv)}: {result.output}{result.exception!r}"
    for written in [
        "sids.parquet",
        "model/manifest.json",
        "new_sids.parquet",
        "id-quality",
        "runs/lf/data/samples/train.parquet",
        "runs/lf/embeddings/text.parquet",
        "runs/lf/sids.parquet",
        "runs/lf/mcca",
    ]:
        assert (tmp_path / written).exists(), written
    assert "72" in result.output and "511" in result.output  # the last line scored its candidates
