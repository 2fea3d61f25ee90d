"""Issue 9.6: each of these printed a traceback; now one line naming the option or path, exit 2,
nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from psrq.errors import ConfigError

from .helpers import write_embeddings


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line(err: str) -> bool:
    return (
        "Traceback" not in err
        and len([line for line in err.strip().splitlines() if line.strip()]) <= 6
    )


@pytest.mark.parametrize(
    ("option", "value"), [("--batch-size", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--epochs", "0")]
)
def test_train_bad_numbers(cli, sid_run, tmp_path, option, value):
    before = _listing(tmp_path)
    res = cli(
        "train",
        "--samples",
        sid_run["samples"],
        "--sids",
        sid_run["sids"],
        "--out",
        tmp_path / "out",
        option,
        value,
    )
    assert res.code == 2 and option in res.err and _one_line(res.err)
    assert _listing(tmp_path) == before


def test_report_dimension_mismatch_names_the_file(cli, sid_run, tmp_path):
    wrong = write_embeddings(tmp_path / "text.parquet", ["a", "b", "c"], np.ones((3, 5)))
    res = cli(
        "report",
        "--model-dir",
        sid_run["root"] / "PSRQ-0",
        "-i",
        f"text={wrong}",
        "--out",
        tmp_path / "rep",
    )
    assert res.code == 2 and str(wrong) in res.err and "5 values" in res.err and _one_line(res.err)
    assert not (tmp_path / "rep").exists()


def test_report_max_items_zero(cli, sid_run, tmp_path):
    res = cli(
        "report",
        "--model-dir",
        sid_run["root"] / "PSRQ-0",
        "-i",
        f"text={sid_run['emb_text']}",
        "--out",
        tmp_path / "rep",
        "--max-items",
        "0",
    )
    assert res.code == 2 and "--max-items" in res.err
    assert not (tmp_path / "rep").exists()


def test_evaluate_samples_directory_says_what_it_expected(cli, sid_run):
    res = cli("evaluate", "--model", sid_run["run"], "--samples", sid_run["samples"])
    assert (
        res.code == 2
        and "is a directory" in res.err
        and "test.parquet" in res.err
        and _one_line(res.err)
    )


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        (
            "quantize:\n  methods:\n    - {name: p, method: PSRQ, codebook_size: 0}\n",
            "codebook_size",
        ),
        (
            "quantize:\n  methods:\n    - {name: p, method: PSRQ, n_levels: 3, codebook_size: [8, 8]}\n",
            "levels",
        ),
        ("rank: {seeds: true}\n", "rank.seeds"),
        ('rank: {lr: "0.1"}\n', "rank.lr"),
        ("rank: {epochs: 2.0}\n", "rank.epochs"),
        ('protocol: {split: ["0.8", 0.1, 0.1]}\n', "protocol.split"),
    ],
)
def test_config_values_are_not_coerced_and_fail_at_validation(cli, tmp_path, yaml, key):
    from psrq.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\n" + yaml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(cfg)
    res = cli("run", "--config", cfg)
    assert res.code == 2 and key.split(".")[-1] in res.err and "Traceback" not in res.err
    assert not (tmp_path / "run").exists()  # failed before data and embedding


def test_config_still_accepts_a_yaml_list_split_and_int_for_float(tmp_path):
    from psrq.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("protocol: {split: [0.8, 0.1, 0.1]}\nrank: {lr: 1}\n")
    config = load_config(cfg)
    assert config.protocol.split == (0.8, 0.1, 0.1) and config.rank.lr == 1
