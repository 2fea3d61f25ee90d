"""`psrq data ...`: prepare a data set into Parquet samples, or generate the SYNTHETIC catalogue."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from psrq.cli_common import WaitOpt

data_app = typer.Typer(
    help=(
        "Data sets -> items / interactions / samples (Parquet), and the SYNTHETIC catalogue.\n\n"
        "Examples:\n\n"
        "  psrq data prepare lastfm2k                  (built-in Last.fm-2k -> runs/lastfm2k/data)\n\n"
        "  psrq data synth --n-items 20000 --out runs/synth/data && psrq data prepare synth runs/synth/data"
    ),
    no_args_is_help=True,
)


class Dataset(StrEnum):
    lastfm2k = "lastfm2k"
    music4all = "music4all"
    amazon2014 = "amazon2014"
    amazon2023 = "amazon2023"
    parquet = "parquet"
    synth = "synth"
    tiktok = "tiktok"


class Rule(StrEnum):
    auto = "auto"
    explicit = "explicit"
    rating = "rating"
    play_count = "play_count"
    implicit = "implicit"


PREPARE_HELP = """Prepare DATASET into OUT: items.parquet, interactions.parquet, samples/{train,valid,test}.parquet + meta.json.

Examples:

  psrq data prepare lastfm2k                       (built-in Last.fm-2k -> runs/lastfm2k/data)

  psrq data prepare music4all --root ~/data/music4all

  psrq data prepare amazon2014 --reviews reviews_Baby_5.json.gz --meta meta_Baby.json.gz --image-features image_features_Baby.b

  psrq data prepare amazon2023 --reviews Baby_Products.jsonl --meta meta_Baby_Products.jsonl

  psrq data prepare parquet --items items.parquet --interactions interactions.parquet --label-rule explicit

  psrq data prepare synth runs/synth/data           (a directory written by `psrq data synth`)

  psrq data prepare tiktok --path ../shared/data/tiktok-mmssl   (audio + image features, the authors' split)

A rerun with unchanged inputs and options prints "up to date" and does nothing (--force to redo).
"""


def _split(text: str) -> tuple[float, float, float]:
    from psrq.errors import ConfigError

    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--split must be three comma-separated fractions like 0.8,0.1,0.1, got {text!r}"
        ) from None
    if len(parts) != 3:
        raise ConfigError(
            f"--split must be three comma-separated fractions like 0.8,0.1,0.1, got {text!r}"
        )
    return parts  # type: ignore[return-value]


@data_app.command("prepare", help=PREPARE_HELP)
def prepare_cmd(
    dataset: Annotated[Dataset, typer.Argument(help="Which data set.")],
    source: Annotated[
        Path | None,
        typer.Argument(help="synth: the catalogue directory (music4all: same as --root)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output directory [default: runs/<dataset>/data; synth: the catalogue directory].",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="music4all: the directory holding id_information.csv etc.; lastfm2k: another copy of the HetRec files."
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="tiktok: the folder holding items.parquet (emb_audio, emb_image) and interactions.parquet (user_id, item_id, split)."
        ),
    ] = None,
    reviews: Annotated[
        Path | None, typer.Option(help="amazon*: the reviews JSON-lines file (.gz ok).")
    ] = None,
    meta: Annotated[
        Path | None, typer.Option(help="amazon*: the metadata JSON-lines file (.gz ok).")
    ] = None,
    image_features: Annotated[
        Path | None,
        typer.Option(
            help="amazon*: image features (2014 binary .b file, or Parquet item_id+embedding)."
        ),
    ] = None,
    image_dim: Annotated[
        int, typer.Option(help="amazon*: width of the binary image features.")
    ] = 4096,
    items: Annotated[Path | None, typer.Option(help="parquet: items.parquet.")] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="parquet: interactions.parquet.")
    ] = None,
    label_rule: Annotated[
        Rule,
        typer.Option(
            help="auto = the data set's own rule (lastfm2k implicit, music4all play_count, amazon rating)."
        ),
    ] = Rule.auto,
    rating_threshold: Annotated[
        float, typer.Option(help="rating rule: rating >= this is positive.")
    ] = 4.0,
    negatives: Annotated[
        int, typer.Option(help="implicit rule: sampled negatives per positive.")
    ] = 1,
    max_history: Annotated[
        int, typer.Option(help="History length (newest positives strictly before the sample).")
    ] = 20,
    split: Annotated[
        str, typer.Option(help="train,valid,test fractions of the global time order.")
    ] = "0.8,0.1,0.1",
    cold_threshold: Annotated[
        int, typer.Option(help="Items with fewer positive training interactions are cold.")
    ] = 30,
    min_year: Annotated[
        int, typer.Option(help="lastfm2k: drop tag events dated before this year.")
    ] = 2005,
    skip_empty_text: Annotated[
        bool, typer.Option(help="Drop (and count) items with empty text instead of failing.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the negative sampling.")] = 0,
    negative_window: Annotated[
        int,
        typer.Option(
            help="implicit rule: negatives follow the popularity of the newest this-many positives of the sample's split up to its time; 0 = the whole split so far."
        ),
    ] = 10_000,
    force: Annotated[
        bool, typer.Option(help="Rebuild even when the cached result is up to date.")
    ] = False,
    wait: WaitOpt = False,
) -> None:
    from psrq.outputs import Output, claim_outputs

    from .labels import LabelRule
    from .prepare import prepare
    from .protocol import ProtocolConfig

    config = ProtocolConfig(
        label_rule=LabelRule(
            kind=label_rule.value, rating_threshold=rating_threshold, n_negatives=negatives
        ),
        max_history=max_history,
        split=_split(split),
        cold_threshold=cold_threshold,
        seed=seed,
        negative_window=negative_window or None,
    )
    from .specs import dataset_spec

    spec = dataset_spec(
        dataset.value,
        source=source,
        root=root or path,
        reviews=reviews,
        meta=meta,
        image_features=image_features,
        image_dim=image_dim,
        items=items,
        interactions=interactions,
        min_year=min_year,
        skip_empty_text=skip_empty_text,
    )
    if out is None:
        out = (
            (source or root)
            if dataset is Dataset.synth and (source or root)
            else Path("runs") / dataset.value / "data"
        )
    outputs = [
        Output(out, "dir", "--out"),
        Output(out / "samples", "model_dir", "--out", lock=False),
    ]
    outputs += [
        Output(out / f"{name}.parquet", "file", "--out", lock=False)
        for name in ("items", "interactions")
    ]
    with claim_outputs(*outputs, wait=wait):
        prepare(spec, config, out, force=force)


SYNTH_HELP = """Generate a SYNTHETIC music catalogue (items, text/audio embeddings, users, interactions).

Examples:

  psrq data synth --out runs/synth/data

  psrq data synth --n-items 1000000 --n-users 100000 --out runs/synth1m/data --seed 1

then:  psrq data prepare synth runs/synth/data
"""


@data_app.command("synth", help=SYNTH_HELP)
def synth_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/synth/data"),
    n_items: Annotated[
        int, typer.Option("--n-items", help="Number of items (up to 10M; streamed in chunks).")
    ] = 10_000,
    n_users: Annotated[int, typer.Option("--n-users", help="Number of users.")] = 1_000,
    per_user: Annotated[
        float, typer.Option("--interactions-per-user", help="Mean exposures per user (log-normal).")
    ] = 40.0,
    genres: Annotated[int, typer.Option(help="Genres.")] = 12,
    subgenres: Annotated[int, typer.Option(help="Subgenres per genre.")] = 6,
    text_dim: Annotated[int, typer.Option(help="Width of the text-like embeddings.")] = 64,
    audio_dim: Annotated[int, typer.Option(help="Width of the audio-like embeddings.")] = 48,
    new_item_share: Annotated[
        float, typer.Option(help="Share of items released in the last tenth of the time window.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed: same seed and options = identical files.")] = 0,
    wait: WaitOpt = False,
) -> None:
    from psrq.outputs import Output, claim_outputs

    from .synth import SynthConfig, generate

    cfg = SynthConfig(
        n_items=n_items,
        n_users=n_users,
        interactions_per_user=per_user,
        n_genres=genres,
        n_subgenres=subgenres,
        text_dim=text_dim,
        audio_dim=audio_dim,
        new_item_share=new_item_share,
        seed=seed,
    )
    outputs = [
        Output(out, "dir", "--out"),
        Output(out / "items.parquet", "file", "--out", lock=False),
        Output(out / "interactions.parquet", "file", "--out", lock=False),
    ]
    with claim_outputs(*outputs, wait=wait):
        summary = generate(cfg, out)
    typer.echo(
        f"wrote SYNTHETIC catalogue to {out}: {summary['items']:,} items, {summary['users']:,} users, "
        f"{summary['interactions']:,} interactions"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
