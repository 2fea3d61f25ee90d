"""`psrq data ...` end to end, including the real built-in Last.fm-2k data."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from psrq.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_prepare_lastfm2k_real_data_statistics_are_plausible(tmp_path):
    out = tmp_path / "lastfm2k"
    res = _invoke("data", "prepare", "lastfm2k", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "train" in res.output and "cold" in res.output
    meta = json.loads((out / "samples" / "meta.json").read_text())
    s = meta["splits"]
    positives = sum(v["positives"] for v in s.values())
    assert 60_000 < positives < 71_062  # tens of thousands of first-tag events
    assert all(
        abs(v["positive_rate"] - 0.5) < 1e-9 for v in s.values()
    )  # one negative per positive
    assert 0.75 < s["train"]["positives"] / positives < 0.85
    assert (
        s["test"]["cold_share_positives"] > 0.6
    )  # Last.fm's long tail: most test targets are cold
    assert s["test"]["new_users"] > 0 and s["test"]["new_items"] > 0
    assert (
        s["train"]["last_day"]
        < s["valid"]["first_day"]
        <= s["valid"]["last_day"]
        < s["test"]["first_day"]
    )
    test = pq.read_table(out / "samples" / "test.parquet")
    assert test.num_rows == s["test"]["rows"]
    again = _invoke("data", "prepare", "lastfm2k", "--out", str(out))
    assert "up to date" in again.output


def test_synth_then_prepare_synth(tmp_path):
    out = tmp_path / "synth"
    res = _invoke(
        "data", "synth", "--n-items", "800", "--n-users", "80", "--out", str(out), "--seed", "2"
    )
    assert res.exit_code == 0 and "SYNTHETIC" in res.output
    res = _invoke(
        "data", "prepare", "synth", str(out), "--max-history", "5", "--split", "0.6,0.2,0.2"
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "samples" / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["label_rule"]["kind"] == "explicit"
    assert meta["protocol"]["max_history"] == 5
    # prepared in place: the catalogue's own files are reused, not rewritten, so the cache holds
    assert (
        "up to date"
        in _invoke(
            "data", "prepare", "synth", str(out), "--max-history", "5", "--split", "0.6,0.2,0.2"
        ).output
    )


def test_bad_input_is_one_line_error_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "psrq.cli",
            "data",
            "prepare",
            "parquet",
            "--items",
            str(tmp_path / "missing.parquet"),
            "--interactions",
            str(tmp_path / "x.parquet"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "items file not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["music4all"], "needs --root DIR"),
        (["amazon2014", "--reviews", "r.json"], "needs --meta FILE"),
        (["lastfm2k", "--split", "0.8,0.2"], "three comma-separated fractions"),
    ],
)
def test_missing_options_are_config_errors(args, message):
    from psrq.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _invoke("data", "prepare", *args)


def test_help_has_examples():
    for cmd in (["data", "prepare", "--help"], ["data", "synth", "--help"]):
        res = _invoke(*cmd)
        assert res.exit_code == 0 and "Examples" in res.output and "psrq data" in res.output
