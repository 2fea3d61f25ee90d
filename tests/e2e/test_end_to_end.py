"""`psrq run` end to end on the built-in real Last.fm-2k data, then the report in headless Chromium.

Slow (it embeds 17,632 artists and trains two rankers), so it runs the real pipeline once with
short training (epochs 2) and checks everything a user relies on: the report renders with
its plots, a rerun reuses every stage, and the config is validated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from psrq.errors import ConfigError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from psrq.config import load_config
    from psrq.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("run") / "lastfm2k"
    cfg_file = out.parent / "config.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {
                "out": str(out),
                "rank": {"models": ["mcca", "din"], "seeds": 1, "epochs": 2},
            }
        )
    )
    run_pipeline(load_config(cfg_file))
    return out


@pytest.mark.slow
def test_run_writes_every_artifact(run_dir: Path) -> None:
    for rel in [
        "data/samples/train.parquet",
        "embeddings/text.parquet",
        "sids/psrq.parquet",
        "sids/rqkmeans.parquet",
        "quantizers/psrq/manifest.json",
        "quality/psrq.json",
        "rank/mcca-psrq/seed0/metrics.json",
        "rank/din/seed0/metrics.json",
        "report.html",
    ]:
        assert (run_dir / rel).exists(), rel
    metrics = json.loads((run_dir / "rank/mcca-psrq/seed0/metrics.json").read_text())["metrics"]
    # Real data, real model: MCCA with text SIDs must beat chance clearly on the test split
    # (~15k test samples: the AUC's standard error is ~0.005; 5-seed MCCA is 0.596 ± 0.012).
    assert metrics["test"]["auc"] > 0.55
    assert 0.0 < metrics["test"]["cold_auc"] < 1.0


@pytest.mark.slow
def test_report_renders_in_chromium_with_its_plots(run_dir: Path, tmp_path: Path) -> None:
    from .render import find_chromium, render_html

    if find_chromium() is None:
        pytest.skip(
            "chromium not installed (scripts/install-chromium.sh installs Debian's package)"
        )
    html = (run_dir / "report.html").read_text()
    for section in ["Data and split", "Semantic-ID quality", "Ranking", "Provenance", "Cold AUC"]:
        assert section in html
    # protocol 3: the popularity probe sits beside the split table, within 0.5 +- 0.03 here
    assert "popularity probe" in html and "WARNING: popularity probe" not in html
    assert 'src="http' not in html  # self-contained: nothing to fetch
    result = render_html(run_dir / "report.html", tmp_path / "shot.png", height=2000)
    assert result.n_images >= 6  # ID-quality plots, drift PCA, AUC bars, training curves
    assert result.n_broken_images == 0
    from PIL import Image

    shot = Image.open(result.screenshot).convert("L")
    extrema = shot.getextrema()
    assert shot.size[0] >= 1000 and extrema[0] < 100 < extrema[1]  # not a blank page


@pytest.mark.slow
def test_rerun_reuses_every_stage(run_dir: Path) -> None:
    from psrq.config import load_config
    from psrq.pipeline import run_pipeline

    config = load_config(run_dir.parent / "config.yaml")
    before = (run_dir / "sids/psrq.parquet").stat().st_mtime_ns
    run_pipeline(config)
    assert (run_dir / "sids/psrq.parquet").stat().st_mtime_ns == before
    markers = list((run_dir / ".stages").glob("*.json"))
    assert len(markers) >= 7
    # the rerun's report lists every stage as reused, none as ran
    html = (run_dir / "report.html").read_text()
    assert '<td class="text">reused</td>' in html
    assert '<td class="text">ran</td>' not in html


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    from psrq.config import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "quantize:\n  methods:\n    - {name: a, method: PSRQ, codebok_size: 64}\nrank: {models: [mcca, foo]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "quantize.methods.0.codebok_size" in text and "codebook_size" in text
    assert "rank.models.1" in text and "mcca" in text


def test_run_cli_prints_config_and_rejects_bad_file(tmp_path: Path) -> None:
    from psrq.cli import app

    result = CliRunner().invoke(app, ["run", "--show-config", "--out", str(tmp_path / "x")])
    assert result.exit_code == 0
    shown = yaml.safe_load(result.output)
    assert shown["out"] == str(tmp_path / "x") and shown["dataset"]["name"] == "lastfm2k"
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasett: {}\n")
    result = CliRunner().invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "datasett" in str(result.exception)


def test_configuration_doc_lists_every_key(repo_root: Path) -> None:
    from pydantic import BaseModel

    from psrq.config import RunConfig

    doc = (repo_root / "docs" / "configuration.md").read_text()

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            inner = field.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                out += keys(inner, f"{prefix}{name}.")
            else:
                out.append(f"{prefix}{name}")
        return out

    missing = [k for k in keys(RunConfig) if f"`{k}`" not in doc]
    assert not missing, f"docs/configuration.md does not document {missing}"
