"""`psrq run` configuration: defaults, YAML files, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from psrq.config import RunConfig, load_config
from psrq.errors import ConfigError


def _yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_need_no_file():
    cfg = load_config()
    assert isinstance(cfg, RunConfig) and cfg == RunConfig()
    assert cfg.dataset.name == "lastfm2k" and cfg.out == "runs/lastfm2k"
    assert [m.name for m in cfg.quantize.methods] == ["psrq", "rqkmeans"]
    assert cfg.sid_method() == "psrq"


def test_a_file_sets_only_the_keys_it_names(tmp_path):
    cfg = load_config(
        _yaml(
            tmp_path,
            {
                "protocol": {"max_history": 5},
                "quantize": {"methods": [{"name": "v", "method": "VQ"}]},
            },
        )
    )
    assert cfg.protocol.max_history == 5
    assert (
        cfg.protocol.cold_threshold == RunConfig().protocol.cold_threshold
    )  # rest of the section kept
    assert [(m.name, m.method) for m in cfg.quantize.methods] == [("v", "VQ")]
    assert cfg.sid_method() == "v"


def test_an_empty_file_is_the_defaults(tmp_path):
    assert load_config(_yaml(tmp_path, "")) == RunConfig()


def test_overrides_merge_over_the_file_and_none_is_ignored(tmp_path):
    path = _yaml(tmp_path, {"out": "runs/a", "protocol": {"max_history": 5, "negatives": 3}})
    cfg = load_config(
        path, {"out": None, "protocol": {"negatives": 2, "seed": None}, "rank": {"seeds": 4}}
    )
    assert cfg.out == "runs/a"  # None leaves the file's value
    assert cfg.protocol.negatives == 2 and cfg.protocol.max_history == 5 and cfg.protocol.seed == 0
    assert cfg.rank.seeds == 4


def test_the_config_is_frozen():
    with pytest.raises(Exception, match="frozen"):
        load_config().out = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"protocl": {}}, r"protocl: unknown key; allowed here: out, dataset, protocol"),
        (
            {"protocol": {"max_histroy": 3}},
            r"protocol.max_histroy: unknown key; allowed here: negatives, max_history",
        ),
        (
            {"quantize": {"methods": [{"name": "a", "method": "PSRQ", "levls": 2}]}},
            r"quantize.methods.0.levls: unknown key; allowed here: name, method, n_levels",
        ),
        (
            {"quantize": {"methods": [{"name": "a", "method": "KMeans"}]}},
            r"quantize.methods.0.method: Input should be 'VQ', 'PQ', 'RQKMeans', 'RQVAE' or 'PSRQ'",
        ),
        ({"protocol": {"split": [0.5, 0.5, 0.5]}}, r"protocol.split: .*sum to 1"),
        (
            {"protocol": {"max_history": 0}},
            r"protocol.max_history: Input should be greater than or equal to 1",
        ),
        (
            {"dataset": {"name": "parquet"}},
            r"dataset: .*needs dataset.items and dataset.interactions",
        ),
        (
            {"quantize": {"methods": [{"name": "a", "method": "VQ", "prefix_weight": 1.0}]}},
            r"prefix_weight applies to method PSRQ only, not VQ",
        ),
        (
            {
                "quantize": {
                    "methods": [{"name": "a", "method": "VQ"}, {"name": "a", "method": "PQ"}]
                }
            },
            r"quantize.methods: .*repeated: \['a'\]",
        ),
        (
            {"rank": {"sid_method": "nope"}},
            r"rank.sid_method 'nope' is not one of quantize.methods \['psrq', 'rqkmeans'\]",
        ),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, data, message):
    path = _yaml(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(f"invalid configuration in {path}:")


def test_override_errors_say_they_come_from_the_defaults():
    with pytest.raises(ConfigError, match=r"^invalid configuration in defaults:\n  rank.seeds: "):
        load_config(None, {"rank": {"seeds": 0}})


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"configuration file not found: .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(_yaml(tmp_path, "out: [unclosed"))
    with pytest.raises(ConfigError, match="the top level must be a mapping of sections, got list"):
        load_config(_yaml(tmp_path, "- a\n- b\n"))
