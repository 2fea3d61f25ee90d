"""`psrq quantize / assign / report` on small SYNTHETIC embedding files written by the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from psrq.errors import ConfigError, InputError
from psrq.formats.sids import SemanticIDs
from psrq.quantize.cli import register
from psrq.quantize.collisions import sid_collisions

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_faiss_thread")


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def synthetic_embeddings(
    n: int, dim: int, seed: int, prefix: str = "synthetic"
) -> tuple[list[str], np.ndarray]:
    """SYNTHETIC: n item IDs and [n, dim] vectors around 10 seeded blob centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, dim)) * 3
    X = centres[rng.integers(0, 10, size=n)] + rng.normal(size=(n, dim)) * 0.5
    return [f"{prefix}-{i:04d}" for i in range(n)], X.astype(np.float32)


def write_embeddings(path: Path, ids: list[str], X: np.ndarray) -> Path:
    """embeddings/<modality>.parquet per docs/conventions.md: item_id + fixed_size_list<float32>."""
    emb = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), pa.float32()), X.shape[1])
    meta = {"psrq.encoder": "synthetic", "psrq.dim": str(X.shape[1]), "psrq.synthetic": "true"}
    pq.write_table(
        pa.table({"item_id": pa.array(ids, pa.string()), "embedding": emb}).replace_schema_metadata(
            meta
        ),
        path,
    )
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synthetic-embeddings")
    ids, text = synthetic_embeddings(240, 16, seed=0)
    _, audio = synthetic_embeddings(240, 8, seed=1)
    return {
        "text": write_embeddings(d / "text.parquet", ids, text),
        "audio": write_embeddings(
            d / "audio.parquet", ids[:200], audio[:200]
        ),  # 40 items lack audio
        "new_text": write_embeddings(
            d / "new_text.parquet", *synthetic_embeddings(60, 16, seed=2, prefix="new")
        ),
        "dir": d,
    }


@pytest.fixture(scope="module")
def quantized(files) -> dict[str, Path]:
    out, model = files["dir"] / "sids.parquet", files["dir"] / "model"
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "-i",
            f"text={files['text']}",
            "-i",
            f"audio={files['audio']}",
            "--codebook-size",
            "4",
            "--out",
            str(out),
            "--model-dir",
            str(model),
            "--disambiguate",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"out": out, "model": model, "output": result.output}


def test_quantize_writes_sids_model_and_collision_table(quantized) -> None:
    table = pq.read_table(quantized["out"])
    assert table.column_names == [
        "item_id",
        "sid_text",
        "sid_text_suffix",
        "sid_audio",
        "sid_audio_suffix",
        "sid_joint",
        "sid_joint_suffix",
        "missing_modalities",
    ]
    assert table.num_rows == 240
    assert table.schema.field("sid_joint").type.list_size == 3  # PSRQ's 3 levels by default
    assert table.column("sid_audio").null_count == 40 and table.column("sid_joint").null_count == 0
    manifest = json.loads((quantized["model"] / "manifest.json").read_text())
    assert (
        manifest["params"]["params"] == {"codebook_size": 4}
        and manifest["fitted"]["kinds"]["joint"] == "PSRQ"
    )
    out = quantized["output"]
    assert "collisions" in out and "joint" in out and "audio: 40" in out
    sids = SemanticIDs.read(quantized["out"])
    assert sids.metadata["psrq.synthetic"] == "true"  # the inputs said so; the output says so too
    for cb, stats in sid_collisions(sids).items():
        assert stats["unique_with_suffix"], cb


def test_quantize_defaults_to_the_codebook_size_of_psrq_run(files, tmp_path) -> None:
    """Without --codebook-size the step-by-step CLI builds the same 3 x 64 IDs as `psrq run`."""
    from psrq.config import load_config

    ids, X = synthetic_embeddings(700, 8, seed=3)  # SYNTHETIC; >= 64 points per level to fit k = 64
    path = write_embeddings(tmp_path / "text.parquet", ids, X)
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "-i",
            f"text={path}",
            "--out",
            str(tmp_path / "s.parquet"),
            "--model-dir",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    run_default = load_config().quantize.methods[0]
    assert (
        manifest["params"]["params"]
        == {"codebook_size": run_default.codebook_size}
        == {"codebook_size": 64}
    )
    assert json.loads(SemanticIDs.read(tmp_path / "s.parquet").metadata["psrq.sid_sizes"])[
        "text"
    ] == [64, 64, 64]


def test_assign_reproduces_training_codes_and_keeps_suffixes_free(files, quantized) -> None:
    d = files["dir"]
    old = runner.invoke(
        make_app(),
        [
            "assign",
            "--model-dir",
            str(quantized["model"]),
            "-i",
            f"text={files['text']}",
            "-i",
            f"audio={files['audio']}",
            "--out",
            str(d / "again.parquet"),
            "--disambiguate",
        ],
    )
    assert old.exit_code == 0, old.output + repr(old.exception)
    train, again = SemanticIDs.read(quantized["out"]), SemanticIDs.read(d / "again.parquet")
    for cb in train.codebooks:
        np.testing.assert_array_equal(again.codes[cb], train.codes[cb])
        np.testing.assert_array_equal(again.suffixes[cb], train.suffixes[cb])
    new = runner.invoke(
        make_app(),
        [
            "assign",
            "--model-dir",
            str(quantized["model"]),
            "-i",
            f"text={files['new_text']}",
            "--out",
            str(d / "new.parquet"),
            "--disambiguate",
        ],
    )
    assert new.exit_code == 0, new.output + repr(new.exception)
    assigned = SemanticIDs.read(d / "new.parquet")
    assert not assigned.present["audio"].any() and assigned.present["joint"].all()
    for cb in ("text", "joint"):
        pairs = {
            (tuple(c), s)
            for c, s, p in zip(train.codes[cb], train.suffixes[cb], train.present[cb], strict=True)
            if p
        }
        new_pairs = {
            (tuple(c), s) for c, s in zip(assigned.codes[cb], assigned.suffixes[cb], strict=True)
        }
        assert not pairs & new_pairs, cb


def test_quantize_from_items_parquet_and_npy(tmp_path) -> None:
    ids, text = synthetic_embeddings(120, 16, seed=3)
    _, image = synthetic_embeddings(120, 6, seed=4)
    image_cells = [
        None if i % 10 == 0 else row for i, row in enumerate(image.tolist())
    ]  # 12 lack image
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ids,
                "text": ["synthetic"] * 120,
                "emb_text": text.tolist(),
                "emb_image": image_cells,
            }
        ),
        items,
    )
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "--items",
            str(items),
            "--method",
            "rqkmeans",
            "--n-levels",
            "2",
            "--codebook-size",
            "5,3",
            "--normalize",
            "text=standard,image=l2",
            "--weight",
            "image=0.5",
            "--out",
            str(tmp_path / "a.parquet"),
            "--set",
            "joint.method=vq",
            "--set",
            "joint.codebook_size=7",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    a = SemanticIDs.read(tmp_path / "a.parquet")
    assert a.codebooks == ["text", "image", "joint"] and a.codes["text"].shape == (120, 2)
    assert a.codes["joint"].shape == (120, 1) and a.codes["joint"].max() == 6  # VQ, k=7
    assert json.loads(a.metadata["psrq.sid_sizes"]) == {
        "text": [5, 3],
        "image": [5, 3],
        "joint": [7],
    }
    assert (~a.present["image"]).sum() == 12 and a.suffixes is None
    assert (tmp_path / "a.model" / "manifest.json").is_file()
    # The same text as .npy + an ID file gives the same text codes (single modality: no joint).
    np.save(tmp_path / "text.npy", text)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "-i",
            f"text={tmp_path / 'text.npy'}",
            "--ids",
            f"text={tmp_path / 'ids.txt'}",
            "--method",
            "rqkmeans",
            "--n-levels",
            "2",
            "--codebook-size",
            "5,3",
            "--normalize",
            "standard",
            "--out",
            str(tmp_path / "b.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    b = SemanticIDs.read(tmp_path / "b.parquet")
    assert b.codebooks == ["text"]
    np.testing.assert_array_equal(b.codes["text"], a.codes["text"])


@pytest.mark.slow
def test_report_writes_quality_json_and_html(files, quantized, tmp_path) -> None:
    result = runner.invoke(
        make_app(),
        [
            "report",
            "--model-dir",
            str(quantized["model"]),
            "-i",
            f"text={files['text']}",
            "-i",
            f"audio={files['audio']}",
            "--out",
            str(tmp_path / "report"),
            "--max-items",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    quality = json.loads((tmp_path / "report" / "quality.json").read_text())
    assert set(quality) == {"text", "audio", "joint"}
    assert quality["audio"]["n_items"] == 200 and quality["joint"]["n_items"] == 240
    assert 0 < quality["text"]["ids"]["unique_ratio"] <= 1
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64" in html and "joint" in html


def test_every_command_has_help_with_an_example() -> None:
    for command in ("quantize", "assign", "report"):
        result = runner.invoke(make_app(), [command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output and f"psrq {command} " in result.output


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            ["--method", "vq", "--n-levels", "2"],
            ConfigError,
            "--n-levels does not apply to --method vq",
        ),
        (["--codebook-size", "4,x"], ConfigError, "--codebook-size must be an int"),
        (["--weight", "audio"], InputError, "--weight expects NAME=VALUE"),
        (["--set", "joint=vq"], ConfigError, "--set expects CODEBOOK.PARAM=VALUE"),
        (
            ["--set", "audio.prefix_wieght=0.5"],
            ConfigError,
            "PSRQ has no parameter 'prefix_wieght'",
        ),
        (["-i", "text=missing.parquet"], InputError, "Parquet file not found: missing.parquet"),
        (["-i", "text=emb.csv"], InputError, "unsupported input"),
    ],
)
def test_bad_options_raise_named_errors(files, args, error, match) -> None:
    base = ["quantize", "-i", f"audio={files['audio']}"]
    result = runner.invoke(make_app(), [*base, *args, "--out", str(files["dir"] / "x.parquet")])
    assert isinstance(result.exception, error), result.output
    assert match in str(result.exception)


def test_duplicate_ids_exit_2_with_one_line_naming_file_and_ids(tmp_path) -> None:
    """Through the real `psrq` entry point: a PsrqError is one line on stderr and exit code 2."""
    ids, X = synthetic_embeddings(30, 4, seed=5)
    ids[7] = ids[3]
    path = write_embeddings(tmp_path / "text.parquet", ids, X)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from psrq.cli import main; main()",
            "quantize",
            "-i",
            f"text={path}",
            "--out",
            str(tmp_path / "s.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and str(path) in lines[0]
        and "duplicate item IDs: 'synthetic-0003' x2" in lines[0]
    )
