"""The one configuration tree: every key round-trips through YAML, old spellings name the new key,
and command-line options reach the training configuration of `psrq train`, `psrq experiment` and
`psrq run`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from psrq.cli import app
from psrq.config import (
    FAMILY_DEFAULTS,
    ExperimentConfig,
    RunConfig,
    TrainConfig,
    TrainingSettings,
    load_config,
    with_overrides,
)
from psrq.errors import ConfigError

runner = CliRunner()

# A value other than the default for every key of the file.
EVERY_KEY = {
    "out": "runs/elsewhere",
    "dataset": {
        "name": "parquet",
        "items": "i.parquet",
        "path": "folder",
        "interactions": "x.parquet",
        "synth_items": 500,
        "synth_users": 50,
    },
    "protocol": {
        "negatives": 3,
        "max_history": 7,
        "split": [0.7, 0.2, 0.1],
        "cold_threshold": 5,
        "seed": 4,
        "negative_window": 99,
    },
    "features": {
        "modalities": ["audio", "text"],
        "text_model": "some/dir",
        "text_backend": "onnx",
        "text_column": "title",
        "audio_model": "musicnn-msd",
    },
    "quantize": {
        "methods": [
            {
                "name": "p",
                "method": "PSRQ",
                "n_levels": 2,
                "codebook_size": [32, 16],
                "prefix_weight": 0.5,
            },
            {"name": "v", "method": "VQ", "n_levels": 1, "codebook_size": 8, "prefix_weight": None},
        ],
        "normalize": "standard",
        "seed": 3,
    },
    "rank": {
        "preset": "paper",
        "epochs": 4,
        "patience": 1,
        "batch_size": 64,
        "lr": 0.01,
        "dim": 16,
        "weight_decay": 0.001,
        "embedding_l2": 0.1,
        "dropout": 0.2,
        "min_id_count": 3,
        "eval_batch_size": 1024,
        "precision": "bf16",
        "models": ["mcca", "din_sid+dot", "vbpr"],
        "sid_method": "v",
        "seeds": 2,
    },
}


def _leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "methods":
            out |= _leaves(ann, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def _keys(data: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        if isinstance(v, dict):
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_every_key_round_trips_through_yaml(tmp_path):
    assert _keys(EVERY_KEY) == _leaves(RunConfig)  # the file above names every key
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(EVERY_KEY))
    cfg = load_config(path)
    dumped = cfg.model_dump(mode="json")
    assert dumped == EVERY_KEY
    default = RunConfig().model_dump(mode="json")
    for section, values in EVERY_KEY.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert default[section][key] != value, f"{section}.{key} is its default"
    # --show-config's YAML reads back as the same configuration
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dumped))
    assert load_config(again) == cfg


def test_the_rank_section_yields_the_training_configuration(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(EVERY_KEY))
    train = load_config(path).train_config("din_sid+dot", seed=1, modalities=["audio", "text"])
    assert isinstance(train, TrainConfig)
    assert train.model == "DIN" and train.model_params == {"sid_codebook": "audio", "dot": True}
    r = EVERY_KEY["rank"]
    for key in (
        "epochs",
        "patience",
        "batch_size",
        "lr",
        "dim",
        "weight_decay",
        "embedding_l2",
        "dropout",
        "min_id_count",
        "eval_batch_size",
        "precision",
    ):
        assert getattr(train, key) == r[key], key
    assert train.max_history == 7 and train.seed == 1
    # keys left null take the preset's values
    paper = load_config(overrides={"rank": {"preset": "paper"}}).train_config(
        "mcca", seed=0, modalities=["text"]
    )
    assert paper == TrainConfig.from_preset("paper", model="MCCA", seed=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"quantize": {"methods": [{"name": "a", "kind": "PSRQ"}]}},
            r"quantize.methods.0: key 'kind' was renamed: write 'method'",
        ),
        (
            {"quantize": {"methods": [{"name": "a", "method": "PSRQ", "levels": 2}]}},
            r"quantize.methods.0: key 'levels' was renamed: write 'n_levels'",
        ),
        ({"rank": {"max_epochs": 3}}, r"rank: key 'max_epochs' was renamed: write 'epochs'"),
    ],
)
def test_old_spellings_name_the_new_key(tmp_path, data, message):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_old_experiment_spelling_names_the_new_fields():
    with pytest.raises(ConfigError, match="'train_overrides' was renamed"):
        ExperimentConfig(samples="s", embeddings="e", train_overrides={"epochs": 1})
    with pytest.raises(ConfigError, match="'max_epochs' was renamed: write 'epochs'"):
        ExperimentConfig(samples="s", embeddings="e", max_epochs=1)


def test_method_aliases_name_the_registered_quantizer():
    cfg = load_config(overrides={"quantize": {"methods": [{"name": "a", "method": "rq-kmeans"}]}})
    assert cfg.quantize.methods[0].method == "RQKMeans"


def test_one_codebook_default_everywhere():
    exp = ExperimentConfig(samples="s", embeddings="e")
    run = RunConfig()
    assert {m.codebook_size for m in run.quantize.methods} == {64}
    assert {p["codebook_size"] for p in exp.quantizer_kwargs().values()} == {64}


def test_with_overrides_ignores_none_and_checks_values():
    s = with_overrides(TrainingSettings(), {"epochs": 3, "lr": None})
    assert s.epochs == 3 and s.lr is None
    with pytest.raises(ConfigError, match="epochs"):
        with_overrides(TrainingSettings(), {"epochs": 0})
    with pytest.raises(ConfigError, match="preset"):
        with_overrides(TrainingSettings(), {"preset": "fast"})


class _Captured(Exception):
    pass


def test_train_flags_reach_the_training_configuration(tmp_path, monkeypatch):
    import psrq.rank.train as train

    seen = {}

    def fake_load(*args, **kwargs):
        seen["load"] = kwargs
        raise _Captured

    def fake_train(data, config, **kwargs):  # pragma: no cover - load stops first
        raise _Captured

    monkeypatch.setattr(train, "load_ranking_data", fake_load)
    monkeypatch.setattr(train, "train_model", fake_train)
    real = TrainingSettings.train_config

    def capture(self, **kwargs):
        seen["config"] = real(self, **kwargs)
        return seen["config"]

    monkeypatch.setattr(TrainingSettings, "train_config", capture)
    result = runner.invoke(
        app,
        [
            "train",
            "--samples",
            str(tmp_path / "samples"),
            "--out",
            str(tmp_path / "out"),
            "--model",
            "DIN",
            "--preset",
            "paper",
            "--epochs",
            "3",
            "--lr",
            "0.01",
            "--batch-size",
            "32",
            "--patience",
            "1",
            "--min-id-count",
            "4",
            "--embedding-l2",
            "0.1",
            "--dropout",
            "0.2",
            "--weight-decay",
            "0.003",
            "--seed",
            "5",
        ],
    )
    assert isinstance(result.exception, _Captured), result.output
    c = seen["config"]
    assert (c.model, c.epochs, c.lr, c.batch_size, c.patience, c.min_id_count, c.seed) == (
        "DIN",
        3,
        0.01,
        32,
        1,
        4,
        5,
    )
    assert (c.embedding_l2, c.dropout, c.max_history, c.weight_decay) == (0.1, 0.2, 20, 0.003)
    assert seen["load"]["min_id_count"] == 4


def test_experiment_flags_reach_the_training_configuration(tmp_path, monkeypatch):
    import psrq.rank.experiment as experiment

    seen = {}

    def fake_run(spec, out, **kwargs):
        seen["spec"] = spec
        return {}

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    result = runner.invoke(
        app,
        [
            "experiment",
            "--samples",
            "s",
            "--embeddings",
            "e",
            "--out",
            str(tmp_path / "exp"),
            "--models",
            "MCCA",
            "--seeds",
            "2",
            "--preset",
            "paper",
            "--epochs",
            "2",
            "--lr",
            "0.05",
            "--dropout",
            "0.1",
            "--min-id-count",
            "7",
            "--weight-decay",
            "0.002",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = seen["spec"]
    assert isinstance(spec, ExperimentConfig) and spec.seeds == [0, 1]
    c = spec.train_config(model="MCCA", model_params={}, seed=1)
    assert (c.epochs, c.lr, c.dropout, c.patience, c.seed) == (2, 0.05, 0.1, 0, 1)
    assert (c.min_id_count, c.weight_decay) == (7, 0.002)


def test_run_flags_override_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"rank": {"seeds": 1, "epochs": 2}}))
    result = runner.invoke(
        app, ["run", "--config", str(path), "--seeds", "3", "--out", "o", "--show-config"]
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["rank"]["seeds"] == 3 and shown["rank"]["epochs"] == 2 and shown["out"] == "o"


def test_exactly_one_protocol_config():
    import psrq.config as config
    from psrq.data.protocol import ProtocolConfig

    assert not hasattr(config, "ProtocolConfig")
    assert isinstance(RunConfig().protocol.protocol(), ProtocolConfig)
    assert Path(config.__file__).read_text().count("class ProtocolConfig") == 0


def test_min_id_count_defaults_per_model_family_and_an_explicit_value_wins():
    din_sid = TrainConfig(model="DIN", model_params={"sid_codebook": "text"})
    assert din_sid.min_id_count == FAMILY_DEFAULTS["DIN+SID"]["min_id_count"] == 30
    assert TrainConfig(model="DIN").min_id_count == 2
    assert TrainConfig(model="MCCA").min_id_count == FAMILY_DEFAULTS["MCCA"]["min_id_count"] == 30
    assert TrainConfig(model="MCCA", model_params={"use_msc": False}).min_id_count == 30
    explicit = TrainConfig(model="DIN", model_params={"sid_codebook": "text"}, min_id_count=5)
    assert explicit.min_id_count == 5
