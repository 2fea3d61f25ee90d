"""The one configuration model tree: `psrq run` (YAML), `psrq train`, `psrq experiment` and the library.

    RunConfig                      `psrq run --config FILE.yaml`
      dataset: DatasetConfig
      protocol: ProtocolSettings   -> psrq.data.protocol.ProtocolConfig
      features: FeaturesConfig
      quantize: QuantizeConfig
        methods: [QuantizerSpec]   {name, method, n_levels, codebook_size, prefix_weight}
      rank: RankConfig             a TrainingSettings + models, sid_method, seeds
    ExperimentConfig               `psrq experiment`: a TrainingSettings + the grid
    TrainingSettings               preset + hyper-parameter overrides -> TrainConfig
    TrainConfig                    one training run (saved in the model directory)

    dataset: {name: lastfm2k}
    quantize:
      methods:
        - {name: psrq, method: PSRQ, codebook_size: 128}
        - {name: rqkmeans, method: RQKMeans, codebook_size: 128}
    rank: {preset: default, epochs: 5, patience: 1}

One name per concept everywhere (library keyword, YAML key, CLI flag): `method` (the quantizer),
`n_levels`, `codebook_size`, `epochs` (an upper bound; early stopping picks the epoch),
`patience`, `min_id_count`, `weight_decay`, `embedding_l2`, `dropout`. A renamed key written
the old way (`kind`, `levels`, `max_epochs`) fails with a ConfigError naming the new key.

Unknown keys and bad values fail with a ConfigError that names the key and says what is
allowed (pydantic does the checking; we only reword its message).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from psrq.errors import ConfigError
from psrq.quantize.registry import (
    DEFAULT_CODEBOOK_SIZE,
    DEFAULT_N_LEVELS,
    KINDS,
    METHOD_ALIASES,
)
from psrq.rank.registry import ALL_MODELS, PAPER_MODELS, RANKERS

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    # strict: numbers and booleans are not coerced (`seeds: true`, `lr: "0.1"` are errors, not 1 and 0.1).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    # Keys renamed to the one vocabulary: old -> new. Written the old way they fail, naming the new key.
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in cls.renamed.items():
                if old in data:
                    raise ValueError(f"key {old!r} was renamed: write {new!r}")
        return data


class _Library(BaseModel):
    """A model built from keyword arguments in Python: a bad value raises ConfigError naming the field."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(_format_error(e, type(self).__name__, type(self))) from None


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


class ProtocolSettings(_Strict):
    """The `protocol` section: the sample protocol (docs/protocol.md) as the YAML file spells it;
    `protocol()` is the library's psrq.data.protocol.ProtocolConfig."""

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

    def protocol(self) -> Any:
        """The psrq.data.protocol.ProtocolConfig these settings describe."""
        from psrq.data.labels import LabelRule
        from psrq.data.protocol import ProtocolConfig

        return ProtocolConfig(
            label_rule=LabelRule(kind="auto", n_negatives=self.negatives),
            max_history=self.max_history,
            split=tuple(self.split),
            cold_threshold=self.cold_threshold,
            seed=self.seed,
            negative_window=self.negative_window,
        )


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
    """One quantizer of `quantize.methods`: `name` (the user's, for paths and tables) and its settings."""

    renamed: ClassVar[dict[str, str]] = {"kind": "method", "levels": "n_levels"}

    name: str
    method: Literal[KINDS]  # type: ignore[valid-type]  # the registry's quantizers (aliases accepted)
    n_levels: int = Field(DEFAULT_N_LEVELS, ge=1)
    codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE
    prefix_weight: float | None = Field(None, ge=0, description="PSRQ only")

    @field_validator("method", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        # "psrq", "rq-kmeans", ...: the registry's aliases name the same quantizer.
        return METHOD_ALIASES.get(v.lower(), v) if isinstance(v, str) else v

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
        if (
            isinstance(self.codebook_size, list)
            and self.method != "VQ"
            and len(sizes) != self.n_levels
        ):
            raise ValueError(
                f"codebook_size lists {len(sizes)} sizes but n_levels is {self.n_levels}; give one per level"
            )
        return self

    @model_validator(mode="after")
    def _prefix_only_for_psrq(self) -> QuantizerSpec:
        if self.prefix_weight is not None and self.method != "PSRQ":
            raise ValueError(f"prefix_weight applies to method PSRQ only, not {self.method}")
        return self

    def params(self) -> dict[str, Any]:
        """The quantizer's keyword arguments (MultimodalQuantizer's `params`)."""
        if self.method == "VQ":  # one level by definition
            return {"codebook_size": self.codebook_size}
        # PQ's levels are its sub-vectors; RQKMeans, PSRQ and RQVAE stack residual levels.
        params: dict[str, Any] = {"n_levels": self.n_levels, "codebook_size": self.codebook_size}
        if self.method == "PSRQ" and self.prefix_weight is not None:
            params["prefix_weight"] = self.prefix_weight
        return params


def default_quantizer_params(method: str) -> dict[str, Any]:
    """The library-default keyword arguments of a quantizer (3 levels of k = 64; VQ one level)."""
    return QuantizerSpec(name=method, method=method).params()


def _default_methods() -> list[QuantizerSpec]:
    return [
        QuantizerSpec(name="psrq", method="PSRQ"),
        QuantizerSpec(name="rqkmeans", method="RQKMeans"),
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


# ---- training ---------------------------------------------------------------------------------
# Defaults per model family, chosen on Last.fm-2k *validation* AUC (protocol 3, text PSRQ SIDs,
# k = 64, 5 seeds; the sweeps and their numbers: docs/ranking.md and docs/results-lastfm2k.md).
# Regularisation: DIN+SID (0.1, 0.3) won on seed 0 but lost on the 5-seed mean (0.6688 vs 0.6769
# for (0, 0)); MCCA: (0, 0) and (0.1, 0.3) tied on seed 0 (0.6720 vs 0.6717); so no family gets a
# regulariser by default. min_id_count (items seen fewer times in training share the OOV ID row):
# for DIN+SID, 30 gave validation AUC 0.7149 +- 0.0095 against 0.6769 +- 0.0144 at 2 (and test std
# 0.008 instead of 0.017): a rare item's own ID row stays close to its random initialisation and
# adds seed-specific noise on exactly the cold items the SIDs are there for. The MCCA family
# (every ablation and variant) has the same ID branch and the same problem: 30 gave validation AUC
# 0.7206 +- 0.0023 against 0.6675 +- 0.0061 on Last.fm-2k, 0.5677 +- 0.0037 against 0.5555 +-
# 0.0014 on TikTok (docs/results-tiktok.md). The other families keep 2 (DIN with item IDs only has
# nothing else to tell rare items apart; VBPR and the content models were not swept).
FAMILY_DEFAULTS: dict[str, dict[str, float]] = {
    "DIN": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 2},
    "DIN+SID": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 30},
    "MCCA": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 30},
    "VBPR": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 2},
    "ContentConcat": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 2},
    "other": {"embedding_l2": 0.0, "dropout": 0.0, "min_id_count": 2},
}


def model_family(model: str, model_params: dict[str, Any]) -> str:
    """The family whose regularisation defaults a model gets: DIN (item IDs only), DIN+SID,
    MCCA (every ablation and variant), VBPR, ContentConcat."""
    if model == "DIN" and model_params.get("sid_codebook"):
        return "DIN+SID"
    return model if model in FAMILY_DEFAULTS else "other"


# "paper": the paper's Music4All / industrial setting (d'=64, history 20, Adam, batch 512,
# lr 1e-4, one epoch). "default": small data sets need several epochs and a larger step; early
# stopping on validation AUC picks the epoch per model (2-3 with SIDs, ~11 for ID-only DIN on
# Last.fm-2k; docs/ranking.md). Fields a preset leaves out keep TrainConfig's defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper gives no regularisation: "paper" has none.
    "paper": {
        "dim": 64,
        "max_history": 20,
        "batch_size": 512,
        "lr": 1e-4,
        "epochs": 1,
        "patience": 0,
        "embedding_l2": 0.0,
        "dropout": 0.0,
    },
    "default": {
        "dim": 64,
        "max_history": 20,
        "batch_size": 512,
        "lr": 1e-3,
        "epochs": 20,
        "patience": 2,
    },
}


class TrainConfig(_Library):
    """Everything that decides one training run (saved in the model directory).

    `TrainingSettings.train_config` (YAML, CLI) and `TrainConfig.from_preset` build it from a
    preset; built directly, the fields default to the "default" preset's values.
    """

    model: str = "MCCA"
    model_params: dict[str, Any] = Field(default_factory=dict)  # e.g. {"use_mjc": False}
    dim: int = Field(64, ge=1)
    max_history: int = Field(20, ge=0)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    # Adam's L2 on the dense weights (towers, attention units, projections).
    weight_decay: float = Field(0.0, ge=0)
    # L2 on the embedding-table rows looked up in each batch (EmbeddingL2) and dropout in the
    # tower; None = the model family's default chosen on validation (FAMILY_DEFAULTS).
    embedding_l2: float | None = None
    dropout: float | None = None
    epochs: int = Field(20, ge=1)  # an upper bound: early stopping picks the epoch
    # epochs without validation-AUC improvement before stopping; 0 = never stop early
    patience: int = Field(2, ge=0)
    # items seen fewer times in training share the OOV ID row; None = the family's default
    min_id_count: int | None = Field(None, ge=0)
    seed: int = 0
    eval_batch_size: int = Field(8192, ge=1)
    # Training arithmetic: "bf16" runs the forward pass under torch.autocast in bfloat16 (CPU or
    # CUDA), "fp16" in float16 with a GradScaler (CUDA only). The loss, the optimiser state, the
    # weights and evaluation stay float32. Tolerance: docs/scaling.md.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        bad = sorted(set(values) - set(cls.model_fields))
        if bad:
            raise ConfigError(
                f"unknown training option(s) {bad}; known: {sorted(cls.model_fields)}"
            )
        return cls(**values)

    @model_validator(mode="after")
    def _family_defaults(self) -> TrainConfig:
        family = FAMILY_DEFAULTS[model_family(self.model, self.model_params)]
        if self.embedding_l2 is None:
            self.embedding_l2 = family["embedding_l2"]
        if self.dropout is None:
            self.dropout = family["dropout"]
        if self.min_id_count is None:
            self.min_id_count = int(family["min_id_count"])
        if self.embedding_l2 < 0:
            raise ValueError(f"embedding_l2 must be >= 0, got {self.embedding_l2}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class TrainingSettings(_Strict):
    """A preset and the hyper-parameters that override it (null = the preset's value; for
    `embedding_l2` / `dropout` with no preset value: the model family's default)."""

    renamed: ClassVar[dict[str, str]] = {"max_epochs": "epochs"}

    preset: Literal[tuple(PRESETS)] = Field(  # type: ignore[valid-type]
        "default", description="default or paper (PRESETS)"
    )
    epochs: int | None = Field(
        None, ge=1, description="upper bound; early stopping on validation AUC picks the epoch"
    )
    patience: int | None = Field(
        None, ge=0, description="epochs without validation-AUC gain before stopping; 0 = never"
    )
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0, description="Adam learning rate")
    dim: int | None = Field(None, ge=1, description="embedding size d'")
    weight_decay: float | None = Field(None, ge=0, description="Adam's L2 on the dense weights")
    embedding_l2: float | None = Field(
        None, ge=0, description="L2 on looked-up embedding rows; null = the model family's default"
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="tower dropout; null = the model family's default"
    )
    min_id_count: int | None = Field(
        None, ge=0, description="items seen fewer times in training share the OOV ID row"
    )
    eval_batch_size: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] | None = Field(
        None, description="training arithmetic (fp16: CUDA only); tolerance in docs/scaling.md"
    )

    def train_config(
        self, *, model: str, model_params: dict[str, Any], seed: int, **fixed: Any
    ) -> TrainConfig:
        """The TrainConfig of one run: the preset, these overrides, then `fixed` (e.g. max_history)."""
        overrides = {f: getattr(self, f) for f in TrainingSettings.model_fields if f != "preset"}
        return TrainConfig.from_preset(
            self.preset,
            **overrides,
            **fixed,
            model=model,
            model_params=dict(model_params),
            seed=seed,
        )


# ---- rankers ----------------------------------------------------------------------------------
# The rankers of `psrq run`, the rows of `psrq experiment` and the "+dot" / "+content" variants
# are defined once, in psrq.rank.registry (no pydantic there, so the CLI can list them cheaply).


RUN_DEFAULT_EPOCHS = 10


class RankConfig(TrainingSettings):
    """The `rank` section: which rankers to train on which quantizer's IDs, and how."""

    models: list[Literal[tuple(RANKERS)]] = ["mcca", "din"]  # type: ignore[valid-type]
    sid_method: str | None = Field(
        None, description="quantizer name feeding MCCA (default: the first)"
    )
    seeds: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short_default_run(cls, data: Any) -> Any:
        # `psrq run` keeps its shorter bound under the default preset (10 epochs; the preset says
        # 20) so the built-in demo stays short; an explicit `epochs` or another preset wins.
        if isinstance(data, dict) and data.get("epochs") is None:
            if data.get("preset", "default") == "default":
                data = {**data, "epochs": RUN_DEFAULT_EPOCHS}
        return data


class RunConfig(_Strict):
    renamed: ClassVar[dict[str, str]] = {"output": "out"}

    out: str = Field("runs/lastfm2k", description="the run directory (`psrq run --out`)")
    dataset: DatasetConfig = DatasetConfig()
    protocol: ProtocolSettings = ProtocolSettings()
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

    def train_config(self, ranker: str, *, seed: int, modalities: list[str]) -> TrainConfig:
        """The TrainConfig of one configured ranker (history length from the protocol)."""
        return self.rank.train_config(
            model=RANKERS[ranker][0],
            model_params=ranker_params(ranker, modalities),
            seed=seed,
            max_history=self.protocol.max_history,
        )


def ranker_params(ranker: str, modalities: list[str]) -> dict[str, Any]:
    """Model parameters of a configured ranker; DIN with SIDs reads the first modality's codebook."""
    model, params, needs_sids, _ = RANKERS[ranker]
    if model == "DIN" and needs_sids:
        if not modalities:
            raise ConfigError(
                f"ranker {ranker!r} needs a modality's semantic IDs, but there are no embeddings"
            )
        return {"sid_codebook": modalities[0], **params}
    return dict(params)


class ExperimentConfig(TrainingSettings):
    """`psrq experiment`: a grid of models x quantizers x seeds on one prepared data set."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    renamed: ClassVar[dict[str, str]] = {
        "max_epochs": "epochs",
        "train_overrides": "the training fields themselves (epochs, lr, patience, ...)",
        "sid_modality": "sid_codebook",
    }

    samples: str = Field(description="samples directory (train/valid/test.parquet)")
    embeddings: str = Field(description="directory of embeddings/<modality>.parquet")
    modalities: list[str] | None = Field(None, description="default: every file in `embeddings`")
    models: list[str] = Field(default_factory=lambda: list(PAPER_MODELS))
    quantizers: list[str] = Field(default_factory=lambda: list(KINDS))
    main_quantizer: str = "PSRQ"
    sid_codebook: str | None = Field(
        None,
        description="codebook of the DIN + SID rows (a modality or joint); default: the first modality",
    )
    quantizer_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per quantizer, keyword arguments over default_quantizer_params",
    )
    quantizer_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(_format_error(e, "experiment configuration", type(self))) from None

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in ALL_MODELS]
        if unknown:
            raise ValueError(f"unknown experiment model(s) {unknown}; known: {ALL_MODELS}")
        return v

    @field_validator("quantizers")
    @classmethod
    def _known_quantizers(cls, v: list[str]) -> list[str]:
        return [_known_quantizer(q) for q in v]

    @field_validator("main_quantizer")
    @classmethod
    def _known_main(cls, v: str) -> str:
        return _known_quantizer(v)

    @field_validator("quantizer_params")
    @classmethod
    def _known_params(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {_known_quantizer(q): p for q, p in v.items()}

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("no seeds given")
        return v

    def quantizer_kwargs(self) -> dict[str, dict[str, Any]]:
        """Every quantizer's keyword arguments: the library defaults, then `quantizer_params`."""
        return {
            q: {**default_quantizer_params(q), **self.quantizer_params.get(q, {})} for q in KINDS
        }


def _known_quantizer(name: str) -> str:
    kind = METHOD_ALIASES.get(name.lower()) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"unknown quantizer {name!r}; known: {list(KINDS)}")
    return kind


def _format_error(err: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            model = _model_at(e["loc"][:-1], root or RunConfig)
            if model is not None:
                msg += f"; allowed here: {', '.join(model.model_fields)}"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] = root
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


def with_overrides(model: M, overrides: dict[str, Any], source: str = "the command line") -> M:
    """`model` with some fields replaced (nested like the model; None values ignored): how every
    command-line option reaches the configuration (`psrq run`, `psrq train`, `psrq experiment`)."""
    data = _deep_merge(model.model_dump(), overrides)
    try:
        return type(model).model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source, type(model))) from None
