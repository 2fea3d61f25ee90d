"""`psrq quantize`, `psrq assign`, `psrq report`: semantic IDs from embeddings, on the command line.

Heavy libraries (faiss, torch, pyarrow) are imported inside the commands so `psrq --help` stays
instant. Errors a user can cause are PsrqError subclasses, printed as one line by psrq.cli.main.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from psrq.cli_common import WaitOpt
from psrq.engines.options import EngineChoice, engine_options
from psrq.quantize.registry import METHOD_NAMES

if TYPE_CHECKING:
    from psrq.formats.embeddings import ModalityEmbeddings
    from psrq.formats.sids import SemanticIDs

# ---- shared options ---------------------------------------------------------------------------------
ENGINE_HELP = (
    "memory: whole matrices in RAM (all features); local / ray: stream Parquet shards (a file or a directory) "
    "in batches, in this process or on Ray Data, and write a directory of sids shards."
)
ItemsOpt = Annotated[
    Path | None,
    typer.Option("--items", help="items.parquet with one emb_<modality> list column per modality."),
]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        help="MODALITY=PATH, repeatable: embeddings/<modality>.parquet (item_id + embedding) or a .npy matrix.",
    ),
]
IdsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ids",
        help="Item IDs of .npy inputs, one per row: MODALITY=ids.txt, or one file for all (.txt/.parquet/.npy).",
    ),
]

QUANTIZE_HELP = """Quantize item embeddings into semantic IDs: one codebook per modality plus the joint one.

Writes --out (item_id, sid_<codebook> code tuples, missing_modalities) and a model directory that `psrq assign` uses for new items, then prints the collision summary per codebook. Items lacking a modality get null codes there; their joint ID imputes the block with the modality's training mean.

Examples:

  psrq quantize -i text=embeddings/text.parquet -i audio=embeddings/audio.parquet --out sids.parquet --model-dir models/sids

  psrq quantize --items items.parquet --method rqkmeans --codebook-size 128 --n-levels 3

  psrq quantize -i text=text.npy --ids text=text_ids.txt --prefix-weight 0.5 --disambiguate

  psrq quantize --items items.parquet --codebook-size 128 --set joint.codebook_size=256 --set audio.method=rqkmeans

  psrq quantize --items items_shards/ --engine ray --out sids/ --model-dir models/sids     (streamed: fit on a seeded sample, assign on Ray)
"""

ASSIGN_HELP = """Encode new items with a saved model's frozen codebooks (same codes as for training items).

With --disambiguate, suffixes continue after those of the training items (and of --taken files).

Example:

  psrq assign --model-dir models/sids -i text=new/text.parquet -i audio=new/audio.parquet --out new_sids.parquet --disambiguate

  psrq assign --model-dir models/sids --items items_shards/ --engine ray --actors 1 --out sids/   (one frozen model per Ray actor)
"""

REPORT_HELP = """Semantic-ID quality of a saved model on embeddings: quality.json + a self-contained report.html.

Example:

  psrq report --model-dir models/sids -i text=embeddings/text.parquet -i audio=embeddings/audio.parquet --out reports/sids
"""


def _gather(
    items: Path | None, inputs: list[str] | None, ids: list[str] | None, **kw: Any
) -> dict[str, ModalityEmbeddings]:
    from rich.console import Console

    from psrq.quantize.embeddings_io import load_modalities

    mods = load_modalities(items=items, inputs=inputs or [], ids=ids or [], **kw)
    console = Console(stderr=True)
    for m, e in mods.items():
        skipped = f", {e.n_null} null rows = missing" if e.n_null else ""
        console.print(f"[dim]{m}: {len(e)} items x {e.dim} from {e.source}{skipped}[/dim]")
    return mods


def _parse_codebook_size(text: str | None) -> int | list[int] | None:
    from psrq.errors import ConfigError

    if text is None:
        return None
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--codebook-size must be an int or a comma list of ints, got {text!r}"
        ) from None
    return sizes[0] if len(sizes) == 1 else sizes


def _parse_normalize(text: str) -> str | dict[str, str]:
    from psrq.quantize.embeddings_io import parse_assignment

    if "=" not in text:
        return text
    return dict(parse_assignment(part, option="--normalize") for part in text.split(","))


def _parse_weights(specs: list[str] | None) -> dict[str, float] | None:
    from psrq.errors import ConfigError
    from psrq.quantize.embeddings_io import parse_assignment

    if not specs:
        return None
    weights = {}
    for spec in specs:
        name, value = parse_assignment(spec, option="--weight")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weight {spec}: {value!r} is not a number") from None
    return weights


def _parse_value(text: str) -> Any:
    """'128' -> 128, '0.5' -> 0.5, '256,128' -> [256, 128], anything else stays a string."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if "," in text:
        return [_parse_value(part.strip()) for part in text.split(",")]
    return text


def _parse_overrides(specs: list[str] | None) -> dict[str, dict[str, Any]] | None:
    """--set CODEBOOK.PARAM=VALUE (repeatable) -> {codebook: {param: value}}."""
    from psrq.errors import ConfigError
    from psrq.quantize.embeddings_io import parse_assignment

    if not specs:
        return None
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, value = parse_assignment(spec, option="--set")
        codebook, dot, param = name.partition(".")
        if not dot or not codebook or not param:
            raise ConfigError(
                f"--set expects CODEBOOK.PARAM=VALUE (e.g. joint.codebook_size=256), got {spec!r}"
            )
        out.setdefault(codebook, {})[param.replace("-", "_")] = _parse_value(value)
    return out


def _quantizer_params(
    method: str, n_levels: int | None, codebook_size: str | None, prefix_weight: float | None
) -> dict[str, Any]:
    """Only the options the user gave; each must exist on the chosen quantizer."""
    from psrq.errors import ConfigError
    from psrq.quantize import QUANTIZERS
    from psrq.quantize.registry import resolve_method

    kind = resolve_method(method)
    given = {
        "n_levels": ("--n-levels", n_levels),
        "codebook_size": ("--codebook-size", _parse_codebook_size(codebook_size)),
        "prefix_weight": ("--prefix-weight", prefix_weight),
    }
    accepted = QUANTIZERS[kind]._param_names()
    params = {}
    for name, (option, value) in given.items():
        if value is None:
            continue
        if name not in accepted:
            raise ConfigError(
                f"{option} does not apply to --method {method} ({kind} has no {name})"
            )
        params[name] = value
    return params


def print_collisions(sids: SemanticIDs, title: str = "Semantic-ID collisions") -> None:
    """Rich table per codebook: items, distinct IDs, unique ratio, items per ID (max, p99),
    colliding items (see psrq.quantize.collisions for the definitions)."""
    from rich.console import Console
    from rich.table import Table

    from psrq.quantize.collisions import sid_collisions

    table = Table(title=title)
    # Short headers: the table must fit an 80-column terminal without truncation.
    for col in ("codebook", "items", "IDs", "unique", "max/ID", "p99/ID", "colliding"):
        table.add_column(col, justify="left" if col == "codebook" else "right")
    if sids.suffixes is not None:
        table.add_column("+suffix unique", justify="right")
    for cb, s in sid_collisions(sids).items():
        row = [
            cb,
            f"{s['items']:,}",
            f"{s['distinct_ids']:,}",
            f"{s['unique_ratio']:.1%}" if s["items"] else "-",
            str(s["items_per_id_max"]),
            str(s["items_per_id_p99"]),
            f"{s['colliding_items']:,}",
        ]
        if sids.suffixes is not None:
            row.append("yes" if s["unique_with_suffix"] else "NO")
        table.add_row(*row)
    Console().print(table)
    missing = (~sids.has_modality).sum(axis=0)
    if missing.any():
        parts = ", ".join(
            f"{m}: {int(k):,}" for m, k in zip(sids.modalities, missing, strict=True) if k
        )
        Console().print(f"items missing a modality (null codes there, joint imputed): {parts}")


# ---- commands -------------------------------------------------------------------------------------
@engine_options(engine_help=ENGINE_HELP, batch_rows=65_536)
def quantize(
    items: ItemsOpt = None,
    inputs: InputOpt = None,
    ids: IdsOpt = None,
    modalities: Annotated[
        str | None,
        typer.Option(help="Comma list restricting/ordering the modalities, e.g. text,audio."),
    ] = None,
    method: Annotated[str, typer.Option(help=" | ".join(METHOD_NAMES) + ".")] = "psrq",
    n_levels: Annotated[
        int | None, typer.Option(help="Code levels (default: the quantizer's; PSRQ: 3).")
    ] = None,
    # 64: the library default (quantize.registry.DEFAULT_CODEBOOK_SIZE), the setting `psrq run` uses and
    # the results were measured with, so the README's step-by-step commands produce the reported IDs.
    codebook_size: Annotated[
        str,
        typer.Option(
            help="Codes per level: 64, or one per level: 256,128,64. Default 64, as in `psrq run` and docs/results-lastfm2k.md."
        ),
    ] = "64",
    prefix_weight: Annotated[
        float | None,
        typer.Option(
            help="PSRQ only: weight of the prefix half (default 0.5; 1 = the paper as written, 0 = RQ-KMeans)."
        ),
    ] = None,
    normalize: Annotated[
        str, typer.Option(help="l2 | standard | none, or per modality: text=l2,audio=standard.")
    ] = "l2",
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", help="MODALITY=W: block weight in the joint ID (repeatable)."),
    ] = None,
    joint: Annotated[
        bool, typer.Option(help="Build the modal-joint codebook (needs >= 2 modalities).")
    ] = True,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Per-codebook override CODEBOOK.PARAM=VALUE (repeatable): joint.method=rqkmeans, audio.codebook_size=64.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every codebook's k-means / training.")] = 0,
    disambiguate: Annotated[
        bool, typer.Option(help="Add sid_<codebook>_suffix columns making IDs unique.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output sids.parquet.")] = Path("sids.parquet"),
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Model directory to write (default: <out>.model next to --out)."),
    ] = None,
    wait: WaitOpt = False,
    sample_rows: Annotated[
        int,
        typer.Option(
            "--sample-rows",
            min=1,
            help="Streamed engines: rows of the seeded sample the codebooks are fitted on.",
        ),
    ] = 65_536,
    *,
    engine: EngineChoice,
) -> None:
    from rich.console import Console

    from psrq.outputs import Output, claim_outputs
    from psrq.quantize.multimodal import MultimodalQuantizer

    streamed = engine.streamed  # --out is then a directory of Parquet shards
    model_dir = model_dir or out.with_name((out.name if streamed else out.stem) + ".model")
    with claim_outputs(
        Output(out, "model_dir" if streamed else "file", "--out"),
        Output(model_dir, "model_dir", "--model-dir"),
        wait=wait,
    ):
        cfg = engine.config() if streamed else None
        wanted = [m.strip() for m in modalities.split(",")] if modalities else None
        if streamed:
            _check_streamable(disambiguate, ids)
        else:  # input errors before option errors
            mods = _gather(items, inputs, ids, modalities=wanted)
        mq = MultimodalQuantizer(
            method=method,
            params=_quantizer_params(method, n_levels, codebook_size, prefix_weight),
            codebook_params=_parse_overrides(set_),
            normalize=_parse_normalize(normalize),
            weights=_parse_weights(weight),
            joint=joint,
            seed=seed,
        )
        if streamed:
            _quantize_streamed(
                items, inputs, wanted, mq, out, model_dir, cfg, sample_rows=sample_rows, seed=seed
            )
            return
        sids = mq.fit_transform(mods, disambiguate=disambiguate)
        mq.save(model_dir)
        sids.write(out)
        print_collisions(sids)
        Console().print(
            f"wrote {out} ({len(sids):,} items, codebooks {', '.join(sids.codebooks)}) and model {model_dir}"
        )


@engine_options(engine_help=ENGINE_HELP, batch_rows=65_536)
def assign(
    model_dir: Annotated[Path, typer.Option(help="Model directory written by `psrq quantize`.")],
    items: ItemsOpt = None,
    inputs: InputOpt = None,
    ids: IdsOpt = None,
    disambiguate: Annotated[
        bool, typer.Option(help="Add suffixes that do not reuse the training items' suffixes.")
    ] = False,
    taken: Annotated[
        list[Path] | None,
        typer.Option(
            "--taken", help="Earlier sids.parquet whose suffixes stay reserved (repeatable)."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Output sids.parquet for the new items (a directory of shards with --engine local/ray)."
        ),
    ] = Path("new_sids.parquet"),
    wait: WaitOpt = False,
    *,
    engine: EngineChoice,
) -> None:
    from rich.console import Console

    from psrq.formats.sids import SemanticIDs
    from psrq.outputs import Output, claim_outputs
    from psrq.quantize.multimodal import MultimodalQuantizer

    streamed = engine.streamed
    with claim_outputs(Output(out, "model_dir" if streamed else "file", "--out"), wait=wait):
        if streamed:
            from psrq.quantize.stream import assign_shards, stream_layout

            _check_streamable(disambiguate, ids)
            mq = MultimodalQuantizer.load(model_dir)
            path, layout = stream_layout(items=items, inputs=inputs, modalities=mq.modalities_)
            cfg = engine.config()
            res = assign_shards(model_dir, path, layout, out, engine=cfg)
            Console().print(
                f"wrote {out}/ ({res.n_rows:,} items in {len(res.files)} shard(s), engine {engine.kind}, {res.seconds:.1f} s)"
            )
            return
        mq = MultimodalQuantizer.load(model_dir)
        mods = _gather(items, inputs, ids, modalities=mq.modalities_, require_all=False)
        earlier = [SemanticIDs.read(p) for p in taken or []]
        sids = mq.transform(mods, disambiguate=disambiguate, taken=earlier)
        sids.write(out)
    print_collisions(sids, title="Semantic-ID collisions among the assigned items")
    Console().print(f"wrote {out} ({len(sids):,} items)")


def report(
    model_dir: Annotated[Path, typer.Option(help="Model directory written by `psrq quantize`.")],
    items: ItemsOpt = None,
    inputs: InputOpt = None,
    ids: IdsOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for quality.json and report.html.")
    ] = Path("reports/sids"),
    max_items: Annotated[
        int, typer.Option(min=1, help="Items sampled for the embedding-space metrics.")
    ] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed of the metric sampling.")] = 0,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    wait: WaitOpt = False,
) -> None:
    from psrq.outputs import Output, claim_outputs

    outputs = (
        Output(out_dir, "dir", "--out"),
        Output(out_dir / "quality.json", "file", "--out", lock=False),
        Output(out_dir / "report.html", "file", "--out", lock=False),
    )
    with claim_outputs(*outputs, wait=wait):
        _report(model_dir, items, inputs, ids, out_dir, max_items, seed, title)


def _report(model_dir, items, inputs, ids, out_dir, max_items, seed, title) -> None:
    from rich.console import Console

    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.quantize.quality import evaluate_ids
    from psrq.report.id_report import write_id_report

    mq = MultimodalQuantizer.load(model_dir)
    mods = _gather(items, inputs, ids, modalities=mq.modalities_, require_all=False)
    results, X_by_name, codes_by_name = {}, {}, {}
    for cb, (_, X) in mq.quantizer_inputs(mods).items():
        q = mq.quantizers_[cb]
        codes = q.transform(X)
        results[cb] = evaluate_ids(X, codes, q, seed=seed, max_items=max_items)
        X_by_name[cb], codes_by_name[cb] = X, codes
    html = write_id_report(
        results,
        out_dir,
        X_by_name=X_by_name,
        codes_by_name=codes_by_name,
        title=title or f"Semantic-ID quality: {model_dir}",
    )
    _print_quality(results)
    Console().print(f"wrote {Path(out_dir) / 'quality.json'} and {html}")


def _print_quality(results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    table = Table(title="Semantic-ID quality (last level / full ID)")
    for col in ("codebook", "items", "recon cos", "unique", "items/ID max", "neighbour recall"):
        table.add_column(col, justify="left" if col == "codebook" else "right")
    for cb, r in results.items():
        last = (r.get("levels") or [{}])[-1]
        ids = r.get("ids", {})
        table.add_row(
            cb,
            fmt(r.get("n_items")),
            fmt(last.get("recon_cos")),
            fmt(ids.get("unique_ratio")),
            fmt(ids.get("items_per_id_max")),
            fmt(ids.get("neighbor_recall")),
        )
    Console().print(table)


def _check_streamable(disambiguate: bool, ids: list[str] | None) -> None:
    from psrq.errors import ConfigError

    if disambiguate:
        raise ConfigError(
            "--disambiguate needs every item at once: use --engine memory (suffixes are not streamed)"
        )
    if ids:
        raise ConfigError(
            "--ids (.npy inputs) is for --engine memory; streamed engines read Parquet shards"
        )


def _quantize_streamed(
    items: Path | None,
    inputs: list[str] | None,
    wanted: list[str] | None,
    mq: Any,
    out: Path,
    model_dir: Path,
    cfg: Any,
    *,
    sample_rows: int,
    seed: int,
) -> None:
    """Fit on a seeded sample of the shards, then assign every row on the chosen engine."""
    from rich.console import Console

    from psrq.quantize.stream import assign_shards, fit_on_sample, stream_layout

    path, layout = stream_layout(items=items, inputs=inputs, modalities=wanted)
    fit = fit_on_sample(path, layout, mq, model_dir=model_dir, sample_rows=sample_rows, seed=seed)
    res = assign_shards(model_dir, path, layout, out, engine=cfg)
    Console().print(
        f"fitted on a {fit['sample_rows']:,}-row sample in {fit['fit_seconds']:.1f} s; wrote model {model_dir} and "
        f"{out}/ ({res.n_rows:,} items in {len(res.files)} shard(s), engine {cfg.kind}, {res.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add quantize / assign / report to the root `psrq` app."""
    app.command("quantize", help=QUANTIZE_HELP)(quantize)
    app.command("assign", help=ASSIGN_HELP)(assign)
    app.command("report", help=REPORT_HELP)(report)
