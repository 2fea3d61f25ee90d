"""StageRunner: a stage runs once, reruns only when its settings or outputs change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psrq.stages import Stage, StageRunner


def _stage(out: Path, calls: list[str], name: str = "embed text", **settings) -> Stage:
    def action() -> None:
        calls.append(name)
        out.write_text("done")

    return Stage(name, {"model": "minilm", **settings}, [out], action)


def test_fingerprint_covers_name_and_settings(tmp_path):
    a = _stage(tmp_path / "a", [])
    assert (
        a.fingerprint == _stage(tmp_path / "other-output", []).fingerprint
    )  # outputs are not settings
    assert a.fingerprint != _stage(tmp_path / "a", [], model="mert").fingerprint
    assert a.fingerprint != _stage(tmp_path / "a", [], name="embed audio").fingerprint


def test_a_stage_runs_once_then_is_reused(tmp_path):
    calls: list[str] = []
    out = tmp_path / "text.parquet"
    first = StageRunner(tmp_path).run(_stage(out, calls))
    assert not first.skipped and calls == ["embed text"]
    marker = json.loads((tmp_path / ".stages" / "embed-text.json").read_text())
    assert marker["fingerprint"] == first.fingerprint and marker["stage"] == "embed text"
    runner = StageRunner(tmp_path)
    second = runner.run(_stage(out, calls))
    assert second.skipped and second.seconds == 0.0 and calls == ["embed text"]
    assert runner.results == [second]


@pytest.mark.parametrize("change", ["settings", "output deleted", "force", "marker corrupt"])
def test_a_stage_reruns_when_anything_it_depends_on_changed(tmp_path, change):
    calls: list[str] = []
    out = tmp_path / "text.parquet"
    StageRunner(tmp_path).run(_stage(out, calls))
    settings = {}
    force = False
    if change == "settings":
        settings = {"model": "mert"}
    elif change == "output deleted":
        out.unlink()
    elif change == "force":
        force = True
    else:
        (tmp_path / ".stages" / "embed-text.json").write_text("{not json")
    result = StageRunner(tmp_path, force=force).run(_stage(out, calls, **settings))
    assert not result.skipped and calls == ["embed text", "embed text"]


def test_an_interrupted_stage_writes_no_marker_and_runs_again(tmp_path):
    out = tmp_path / "sids.parquet"

    def crash() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path).run(Stage("quantize psrq", {}, [out], crash))
    assert not (tmp_path / ".stages" / "quantize-psrq.json").exists()
    calls: list[str] = []
    assert not StageRunner(tmp_path).run(_stage(out, calls, name="quantize psrq")).skipped


def test_a_stage_that_writes_no_output_is_an_error_naming_it(tmp_path):
    stage = Stage("train mcca seed 0", {}, [tmp_path / "metrics.json"], lambda: None)
    with pytest.raises(
        RuntimeError, match=r"train mcca seed 0 finished without writing .*metrics.json"
    ):
        StageRunner(tmp_path).run(stage)
    assert not (tmp_path / ".stages").exists() or not any((tmp_path / ".stages").iterdir())


def test_marker_names_are_safe_file_names(tmp_path):
    calls: list[str] = []
    StageRunner(tmp_path).run(_stage(tmp_path / "o", calls, name="ID quality psrq / joint"))
    assert [p.name for p in (tmp_path / ".stages").iterdir()] == ["ID-quality-psrq-joint.json"]
