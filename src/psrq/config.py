"""The `psrq run` configuration: a validated YAML file, every key defaulted.

    dataset: {name: lastfm2k}
    quantize:
      methods:
        - {name: psrq, kind: PSRQ, codebook_size: 128}
        - {name: rqkmeans, kind: RQKMeans, codebook_size: 128}

Unknown keys and bad values fail with a ConfigError that names the key and says what is
allowed (pydantic does the checking; we only reword its message).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from psrq.errors import ConfigError
from psrq.quantize.registry import KINDS


class _Strict(BaseModel):
    # strict: numbers and booleans are not coerced (`seeds: true`, `lr: "0.1"` are errors, not 1 and 0.1).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DatasetConfig(_Strict):
    """Where interactions and items come from."""

    name: Literal["lastfm2k", "parquet", "synth", "tiktok"] = "lastfm2k"
    items: str | None = Field(None, description="items.parquet (name: parquet)")
    path: str | None = Field(
        None, description="the folder holding items.parquet + interactions.parquet (name: tiktok)"
    )
    interactions: str | None = Field(None, description="interactions.parquet (name: parquet)")
    synth_items: int = Field(
        20_000, ge=100, description="items to generate (name: synth; SYNTHETIC)"
    )
    synth_users: int = Field(2_000, ge=10, description="users to generate (name: synth; SYNTHETIC)")

    @model_validator(mode="after")
    def _parquet_needs_paths(self) -> DatasetConfig:
        if self.name == "parquet" and not (self.items and self.interactions):
            raise ValueError(
                "dataset.name 'parquet' needs dataset.items and dataset.interactions paths"
            )
        if self.name == "tiktok" and not self.path:
            raise ValueError(
                "dataset.name 'tiktok' needs dataset.path (the folder, e.g. ../shared/data/tiktok-mmssl)"
            )
        return self


class ProtocolConfig(_Strict):
    """The sample protocol (docs/protocol.md)."""

    negatives: int = Field(1, ge=0, description="sampled negatives per implicit positive")
    max_history: int = Field(20, ge=1)
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), strict=False)  # YAML gives a list
    cold_threshold: int = Field(30, ge=1)
    seed: int = 0
    negative_window: int | None = Field(
        10_000,
        ge=1,
        description="negatives follow the popularity of the newest this-many positives of the same split "
        "up to the sample's time (null: the whole split so far)",
    )

    @field_validator("split")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {list(v)}")
        return v


class FeaturesConfig(_Strict):
    """Which modalities, and the encoders of those that are not precomputed; null disables a modality."""

    modalities: list[str] | None = Field(
        None,
        description="modalities to quantize and rank on, in this order. null = inferred: every precomputed "
        "one (emb_<modality> item columns, embeddings of the data set), then text if the items "
        "have a text column, then audio if audio_model is set",
    )
    text_model: str = Field(
        "minilm", description="'minilm' or a local Hugging Face model directory"
    )
    text_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="how a sentence-transformers text model runs on CPU (docs/encoders.md)"
    )
    text_column: str = "text"
    audio_model: str | None = Field(
        None, description="None (no audio), 'musicnn-msd', 'musicnn-mtt' or a local MERT directory"
    )


class QuantizerSpec(_Strict):
    name: str
    kind: Literal[KINDS]  # type: ignore[valid-type]  # the registry's quantizer kinds
    levels: int = Field(3, ge=1)
    codebook_size: int | list[int] = 64
    prefix_weight: float | None = Field(None, ge=0, description="PSRQ only")

    @model_validator(mode="after")
    def _codebook_sizes(self) -> QuantizerSpec:
        sizes = (
            [self.codebook_size]
            if isinstance(self.codebook_size, int)
            else list(self.codebook_size)
        )
        if not sizes or any(k < 1 for k in sizes):
            raise ValueError(
                f"codebook_size must be >= 1 (one int, or one per level), got {self.codebook_size!r}"
            )
        if isinstance(self.codebook_size, list) and self.kind != "VQ" and len(sizes) != self.levels:
            raise ValueError(
                f"codebook_size lists {len(sizes)} sizes but levels is {self.levels}; give one per level"
            )
        return self

    @model_validator(mode="after")
    def _prefix_only_for_psrq(self) -> QuantizerSpec:
        if self.prefix_weight is not None and self.kind != "PSRQ":
            raise ValueError(f"prefix_weight applies to kind PSRQ only, not {self.kind}")
        return self


def _default_methods() -> list[QuantizerSpec]:
    # k = 64: the setting our Last.fm-2k ranking results were measured with (docs/results-lastfm2k.md);
    # the paper uses 64 / 128 / 256 for catalogues of 34k / 100k / 1.4M items.
    return [
        QuantizerSpec(name="psrq", kind="PSRQ", levels=3, codebook_size=64),
        QuantizerSpec(name="rqkmeans", kind="RQKMeans", levels=3, codebook_size=64),
    ]


class QuantizeConfig(_Strict):
    methods: list[QuantizerSpec] = Field(default_factory=_default_methods)
    normalize: Literal["l2", "standard", "none"] = "l2"
    seed: int = 0

    @field_validator("methods")
    @classmethod
    def _unique_names(cls, v: list[QuantizerSpec]) -> list[QuantizerSpec]:
        names = [m.name for m in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"quantizer names must be unique, repeated: {dupes}")
        if not v:
            raise ValueError("at least one quantizer is needed")
        return v


class RankConfig(_Strict):
    """Which rankers to train on which quantizer's IDs."""

    # "+dot" / "+content" / "+content+dot": beyond the paper (docs/ranking.md), beside the paper's rows.
    models: list[
        Literal[
            "mcca",
            "din",
            "din_sid",
            "vbpr",
            "content",
            "mcca+dot",
            "mcca+content",
            "mcca+content+dot",
            "din_sid+dot",
            "din_sid+content",
            "din_sid+content+dot",
            "simtier_make",
            "qarm",
        ]
    ] = ["mcca", "din"]
    sid_method: str | None = Field(
        None, description="quantizer name feeding MCCA (default: the first)"
    )
    seeds: int = Field(1, ge=1)
    max_epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    dim: int = Field(64, ge=1)
    embedding_l2: float | None = Field(
        None, ge=0, description="L2 on looked-up embedding rows; null = the model family's default"
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="tower dropout; null = the model family's default"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="training arithmetic (fp16: CUDA only); tolerance in docs/scaling.md"
    )


class RunConfig(_Strict):
    output: str = "runs/lastfm2k"
    dataset: DatasetConfig = DatasetConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    features: FeaturesConfig = FeaturesConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    rank: RankConfig = RankConfig()

    @model_validator(mode="after")
    def _sid_method_exists(self) -> RunConfig:
        names = [m.name for m in self.quantize.methods]
        if self.rank.sid_method is not None and self.rank.sid_method not in names:
            raise ValueError(
                f"rank.sid_method {self.rank.sid_method!r} is not one of quantize.methods {names}"
            )
        return self

    def sid_method(self) -> str:
        return self.rank.sid_method or self.quantize.methods[0].name


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            model = _model_at(e["loc"][:-1])
            if model is not None:
                msg += f"; allowed here: {', '.join(model.model_fields)}"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = _deep_merge({}, value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read and validate a YAML config (or the defaults when `path` is None).

    `overrides` (nested like the file, None values ignored) are merged over the file, so a
    command-line option changes one key without replacing its section.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"configuration file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"{p}: the top level must be a mapping of sections, got {type(loaded).__name__}"
            )
        data = loaded or {}
    data = _deep_merge(data, overrides or {})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None
