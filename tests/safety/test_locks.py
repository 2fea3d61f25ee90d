"""Issue 9.2: one writer per output. Two real processes contend for the same output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOLDER = """
import sys, time, pathlib
from psrq.outputs import lock_output
with lock_output(sys.argv[1]):
    print("locked", flush=True)
    release = pathlib.Path(sys.argv[2])
    deadline = time.time() + 120
    while not release.exists() and time.time() < deadline:
        time.sleep(0.05)
"""


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {
        **os.environ,
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def holder(tmp_path):
    """Start a process holding psrq's lock on a path; yields (process, release-file)."""
    procs = []

    def start(path: Path) -> tuple[subprocess.Popen, Path]:
        release = tmp_path / f"release-{len(procs)}"
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(release)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        procs.append((proc, release))
        assert proc.stdout.readline().strip() == "locked"
        return proc, release

    yield start
    for proc, release in procs:
        release.touch()
        proc.wait(timeout=30)


def _psrq(*args, wait: bool = True, **kw):
    cmd = [sys.executable, "-m", "psrq.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), **kw
        )
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, **kw)


def test_second_quantize_on_the_same_output_fails_at_once_naming_pid_and_path(
    holder, emb_files, tmp_path
):
    out = tmp_path / "sids.parquet"
    proc, _ = holder(out)
    t0 = time.perf_counter()
    res = _psrq(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        out,
        "--model-dir",
        tmp_path / "m",
    )
    assert res.returncode == 2, res.stderr
    assert f"PID {proc.pid}" in res.stderr and str(out) in res.stderr and "--wait" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() and not (tmp_path / "m").exists()
    assert time.perf_counter() - t0 < 60  # at once, not after a fit


def test_second_writer_of_a_model_dir_fails_too(holder, emb_files, tmp_path):
    proc, _ = holder(tmp_path / "m")
    res = _psrq(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        tmp_path / "other.parquet",
        "--model-dir",
        tmp_path / "m",
    )
    assert (
        res.returncode == 2
        and f"PID {proc.pid}" in res.stderr
        and str(tmp_path / "m") in res.stderr
    )


def test_wait_blocks_until_the_holder_is_done(holder, emb_files, tmp_path):
    out = tmp_path / "sids.parquet"
    _, release = holder(out)
    waiting = _psrq(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        out,
        "--model-dir",
        tmp_path / "m",
        "--wait",
        wait=False,
    )
    time.sleep(3)
    assert waiting.poll() is None, waiting.communicate()  # still waiting for the lock
    assert not out.exists()
    release.touch()
    _, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stderr
    assert out.is_file() and (tmp_path / "m" / "manifest.json").is_file()


def test_second_run_on_the_same_directory_fails(holder, cli, tmp_path):
    run_dir = tmp_path / "run"
    proc, _ = holder(run_dir)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {run_dir}\ndataset: {{name: synth, synth_items: 100, synth_users: 10}}\n")
    res = cli("run", "--config", cfg)
    assert res.code == 2 and f"PID {proc.pid}" in res.err and str(run_dir) in res.err
    assert not run_dir.exists()


def test_lock_is_released_when_the_holder_dies(emb_files, tmp_path):
    """An OS lock (flock): a killed writer leaves no stale lock behind."""
    out = tmp_path / "sids.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out), str(tmp_path / "never")],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait(timeout=30)
    res = _psrq(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        out,
        "--model-dir",
        tmp_path / "m",
    )
    assert res.returncode == 0, res.stderr
