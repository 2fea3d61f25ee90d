"""Issue 9.1: psrq replaces only what psrq wrote, and refuses bad output paths before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from psrq.artifacts import atomic_path, write_model_dir
from psrq.errors import OutputError


def _user_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("the user's own file")
    return path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_quantize_out_naming_a_user_directory_is_refused_before_work(cli, emb_files, tmp_path):
    d = _user_dir(tmp_path / "d")
    before = _listing(tmp_path)
    res = cli("quantize", "-i", f"text={emb_files['text']}", "--codebook-size", "4", "--out", d)
    assert res.code == 2
    assert str(d) in res.err and "directory" in res.err and "keep.txt" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert (d / "keep.txt").read_text() == "the user's own file"
    assert _listing(tmp_path) == before  # no model dir, no Parquet, nothing
    assert "text:" not in res.err + res.out  # refused before the embeddings were even read


def test_quantize_model_dir_with_user_files_is_refused(cli, emb_files, tmp_path):
    p = _user_dir(tmp_path / "p")
    before = _listing(tmp_path)
    res = cli(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        tmp_path / "sids.parquet",
        "--model-dir",
        p,
    )
    assert res.code == 2 and str(p) in res.err and "manifest" in res.err
    assert _listing(tmp_path) == before


def test_quantize_replaces_its_own_outputs(cli, emb_files, tmp_path):
    args = (
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        tmp_path / "sids.parquet",
        "--model-dir",
        tmp_path / "m",
    )
    assert cli(*args).code == 0
    first = (tmp_path / "m" / "manifest.json").stat().st_mtime_ns
    assert cli(*args, "--seed", "1").code == 0  # a psrq model directory is replaced by a new one
    assert (tmp_path / "m" / "manifest.json").stat().st_mtime_ns != first


def test_empty_directory_may_be_replaced(cli, emb_files, tmp_path):
    (tmp_path / "m").mkdir()
    res = cli(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        tmp_path / "sids.parquet",
        "--model-dir",
        tmp_path / "m",
    )
    assert res.code == 0, res.err
    assert (tmp_path / "m" / "manifest.json").is_file()


def test_embed_out_naming_a_directory_is_refused(cli, tmp_path):
    d = _user_dir(tmp_path / "emb")
    res = cli("embed", "text", "--items", tmp_path / "items.parquet", "--out", d)
    assert res.code == 2 and str(d) in res.err
    assert (d / "keep.txt").is_file() and _listing(d) == ["keep.txt"]


def test_score_json_naming_a_directory_is_refused(cli, trained, tmp_path):
    d = _user_dir(tmp_path / "scores")
    res = cli("score", "--model", trained["run"], "--candidates", "syn_item_1", "--out", d)
    assert res.code == 2 and str(d) in res.err and "--out" in res.err
    assert _listing(d) == ["keep.txt"]


def test_report_out_dir_naming_a_file_is_refused(cli, emb_files, tmp_path):
    assert (
        cli(
            "quantize",
            "-i",
            f"text={emb_files['text']}",
            "--codebook-size",
            "4",
            "--out",
            tmp_path / "s.parquet",
            "--model-dir",
            tmp_path / "m",
        ).code
        == 0
    )
    f = tmp_path / "report"
    f.write_text("not a folder")
    res = cli(
        "report", "--model-dir", tmp_path / "m", "-i", f"text={emb_files['text']}", "--out", f
    )
    assert res.code == 2 and str(f) in res.err and "--out" in res.err
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize(
    "where", ["/sys/psrq-test/sids.parquet", "/proc/psrq-test.parquet", "under-a-file"]
)
def test_unwritable_out_is_refused_before_fitting(cli, emb_files, tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "afile").write_text("x")
        where = str(tmp_path / "afile" / "sids.parquet")
    res = cli(
        "quantize",
        "-i",
        f"text={emb_files['text']}",
        "--codebook-size",
        "4",
        "--out",
        where,
        "--model-dir",
        tmp_path / "m",
    )
    assert res.code == 2 and where in res.err and "cannot be written" in res.err
    assert "Traceback" not in res.err
    assert not (tmp_path / "m").exists()


def test_score_json_to_an_impossible_path(cli, trained, tmp_path):
    res = cli(
        "score",
        "--model",
        trained["run"],
        "--candidates",
        "syn_item_1",
        "--out",
        "/proc/psrq/s.json",
    )
    assert res.code == 2 and "/proc/psrq/s.json" in res.err and "--out" in res.err


def test_run_output_naming_a_file(cli, tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {f}\n")
    res = cli("run", "--config", cfg)
    assert res.code == 2 and str(f) in res.err and len(res.err.strip().splitlines()) == 1
    assert f.read_text() == "x"


def test_train_out_holding_a_user_model_folder(cli, trained, tmp_path):
    out = tmp_path / "train"
    _user_dir(out / "model")
    res = cli(
        "train",
        "--samples",
        trained["samples"],
        "--sids",
        trained["sids"],
        "--out",
        out,
        "--epochs",
        "1",
    )
    assert res.code == 2 and str(out / "model") in res.err
    assert _listing(out) == ["model", "model/keep.txt"]


def test_atomic_path_never_replaces_a_foreign_directory(tmp_path):
    d = _user_dir(tmp_path / "d")
    with pytest.raises(OutputError, match=r"keep\.txt"), atomic_path(d) as tmp:
        tmp.write_text("a file")
    with pytest.raises(OutputError, match="psrq replaces only a directory it wrote"):
        with write_model_dir(d, kind="X", params={}) as staged:
            (staged / "a.npy").write_bytes(b"")
    assert _listing(d) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary left behind


def test_a_file_replaces_a_file_and_a_link_stays_a_link_target(tmp_path):
    f = tmp_path / "f.json"
    f.write_text("old")
    with atomic_path(f) as tmp:
        tmp.write_text("new")
    assert f.read_text() == "new"
    target = _user_dir(tmp_path / "elsewhere")
    link = tmp_path / "link"
    os.symlink(target, link)
    with pytest.raises(OutputError):  # a directory symlink is not replaced by a model directory
        with write_model_dir(link, kind="X", params={}) as staged:
            (staged / "a").write_text("")
    assert _listing(target) == ["keep.txt"]
