"""Streamed quantize / assign on Parquet shards: local and Ray engines give the in-memory codes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from psrq.engines import EngineConfig
from psrq.errors import ConfigError, InputError
from psrq.formats.embeddings import table_modalities
from psrq.quantize.cli import register
from psrq.quantize.multimodal import MultimodalQuantizer
from psrq.quantize.stream import assign_shards, sample_table, stream_layout

runner = CliRunner()
SID_COLUMNS = ["item_id", "sid_text", "sid_audio", "sid_joint", "missing_modalities"]


def read_shards(path) -> pa.Table:
    """Every shard of an output directory, rows sorted by item_id (engines may reorder batches)."""
    files = sorted(path.glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("item_id")


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def model_dir(item_shards, tmp_path_factory):
    """A MultimodalQuantizer fitted in memory on every shard (the reference)."""
    _, layout = stream_layout(items=item_shards)
    full = pa.concat_tables([pq.read_table(p) for p in sorted(item_shards.glob("*.parquet"))])
    mq = MultimodalQuantizer(params={"codebook_size": 16}, seed=0).fit(
        table_modalities(full, layout, "all shards")
    )
    out = tmp_path_factory.mktemp("model") / "sids.model"
    mq.save(out)
    return out


def memory_codes(model_dir, item_shards) -> pa.Table:
    """What the in-memory path (`psrq assign --engine memory`) gives, sorted by item_id."""
    full = pa.concat_tables([pq.read_table(p) for p in sorted(item_shards.glob("*.parquet"))])
    _, layout = stream_layout(items=item_shards)
    mq = MultimodalQuantizer.load(model_dir)
    return mq.transform(table_modalities(full, layout, "all shards")).to_table().sort_by("item_id")


def memory_rows(item_shards) -> int:
    full = pa.concat_tables([pq.read_table(p) for p in sorted(item_shards.glob("*.parquet"))])
    both_null = full.column("emb_text").is_null().to_numpy(zero_copy_only=False) & full.column(
        "emb_audio"
    ).is_null().to_numpy(zero_copy_only=False)
    return int((~both_null).sum())


def test_local_engine_gives_the_in_memory_codes(item_shards, model_dir, tmp_path):
    path, layout = stream_layout(items=item_shards)
    res = assign_shards(
        model_dir,
        path,
        layout,
        tmp_path / "sids",
        engine=EngineConfig(kind="local", batch_rows=300),
    )
    got, want = read_shards(tmp_path / "sids"), memory_codes(model_dir, item_shards)
    assert got.column_names == SID_COLUMNS
    assert res.n_rows == want.num_rows  # items with no modality at all are left out by both paths
    for c in SID_COLUMNS:
        assert got.column(c).equals(want.column(c)), c
    assert len(res.files) == 3  # one output shard per input shard


def test_ray_assign_cli_gives_byte_identical_codes(ray_local, item_shards, model_dir, tmp_path):
    out = tmp_path / "sids_ray"
    result = runner.invoke(
        make_app(),
        [
            "assign",
            "--model-dir",
            str(model_dir),
            "--items",
            str(item_shards),
            "--engine",
            "ray",
            "--batch-rows",
            "400",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    got, want = read_shards(out), memory_codes(model_dir, item_shards)
    assert got.num_rows == want.num_rows
    for c in SID_COLUMNS:
        assert got.column(c).equals(want.column(c)), c
    # The codes columns are fixed-size int32 lists, byte for byte the in-memory ones.
    for c in ("sid_text", "sid_audio", "sid_joint"):
        a = got.column(c).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        b = want.column(c).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        assert a.tobytes() == b.tobytes()
    assert pq.read_schema(sorted(out.glob("*.parquet"))[0]).metadata[b"psrq.synthetic"] == b"true"


def test_ray_quantize_equals_local_quantize(ray_local, item_shards, tmp_path):
    """Fitting happens on the driver from the same seeded sample, so both engines give one model
    and the same codes for every row."""
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"sids_{engine}"
        result = runner.invoke(
            make_app(),
            [
                "quantize",
                "--items",
                str(item_shards),
                "--engine",
                engine,
                "--codebook-size",
                "16",
                "--sample-rows",
                "1000",
                "--seed",
                "3",
                "--out",
                str(out),
                "--model-dir",
                str(tmp_path / f"model_{engine}"),
            ],
        )
        assert result.exit_code == 0, result.output
        outs[engine] = read_shards(out)
    assert outs["local"].num_rows == memory_rows(item_shards)
    assert outs["local"].equals(outs["ray"])
    fp = [
        MultimodalQuantizer.load(tmp_path / f"model_{e}").input_fingerprint_
        for e in ("local", "ray")
    ]
    assert fp[0] == fp[1]


def test_sample_is_seeded_and_uniform_over_shards(item_shards):
    a = sample_table(item_shards, ["item_id"], 500, seed=1).column("item_id").to_pylist()
    b = sample_table(item_shards, ["item_id"], 500, seed=1).column("item_id").to_pylist()
    c = sample_table(item_shards, ["item_id"], 500, seed=2).column("item_id").to_pylist()
    assert a == b and a != c and len(set(a)) == 500
    # Uniform over the global row numbers: every shard is represented about in proportion.
    share = np.mean([i.startswith("synthetic-2-") for i in a])
    assert 0.3 < share < 0.56  # 900 of 2,100 rows = 0.43
    everything = sample_table(item_shards, ["item_id"], 10_000, seed=0)
    assert everything.num_rows == 2100


def test_streamed_inputs_must_be_self_contained_rows(item_shards, tmp_path):
    with pytest.raises(InputError, match="one --input"):
        stream_layout(inputs=[f"text={item_shards}", f"audio={item_shards}"])
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "--items",
            str(item_shards),
            "--engine",
            "local",
            "--disambiguate",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert isinstance(result.exception, ConfigError)


def test_actor_pool_may_not_take_every_cpu():
    with pytest.raises(ConfigError, match="read tasks"):
        EngineConfig(kind="ray", num_cpus=2, actors=2, actor_cpus=1.0)
    EngineConfig(kind="ray", num_cpus=2, actors=2, actor_cpus=0.5)


def test_streamed_quantize_refuses_ids_like_assign(item_shards, tmp_path):
    """--ids pairs .npy inputs with IDs; the streamed engines read Parquet and would ignore it."""
    result = runner.invoke(
        make_app(),
        [
            "quantize",
            "--items",
            str(item_shards),
            "--engine",
            "local",
            "--ids",
            "text=ids.txt",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert isinstance(result.exception, ConfigError) and "--ids" in str(result.exception)
