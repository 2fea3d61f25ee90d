"""A SYNTHETIC music catalogue with known structure, for tests, benchmarks and scale runs.

Everything here is made up (and labelled so: item IDs start with "synth-", every Parquet file
carries `psrq.synthetic = true`, text says "SYNTHETIC"). What it models:

* a genre -> subgenre hierarchy shared by both modalities (a latent "semantic" vector per item,
  drawn around its subgenre centre, which sits around its genre centre);
* modality-specific factors: text sees language and era, audio sees tempo and timbre;
* text and audio embeddings are different random linear maps of [semantic || own factors] plus
  noise, so same-genre items are close in both, and each modality carries what the other lacks;
* users with a taste over genres (Dirichlet) plus a text-side preference (language) and audio-side
  preferences (tempo, timbre); exposures follow taste x long-tail popularity, the 0/1 label
  depends on taste *and* both modality-specific preferences;
* cold items: log-normal popularity (long tail) and `new_item_share` of items released in the
  last tenth of the time window, so they can only be interacted with late.

Items are generated in fixed chunks with a per-chunk seed, so the result depends only on the
configuration (not on memory or batch size) and 10M items stream to Parquet in bounded memory
(per-item factors stay in memory: ~25 bytes an item; embeddings never do).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from psrq.artifacts import atomic_path
from psrq.errors import ConfigError
from psrq.formats.embeddings import embedding_table

CHUNK = 100_000  # items (or users) per generated chunk; part of the seed scheme, do not change
LANGUAGES = ("en", "es", "pt", "de", "fr", "ja", "ko", "sv")
LANGUAGE_P = np.array([0.45, 0.14, 0.1, 0.08, 0.08, 0.06, 0.05, 0.04])
N_TIMBRES = 8
LATENT = 16  # semantic latent width
FACTOR = 8  # width of each modality-specific factor embedding
SYNTHETIC_META = {b"psrq.synthetic": b"true", b"psrq.generator": b"psrq.data.synth v1 (SYNTHETIC)"}


@dataclass(frozen=True)
class SynthConfig:
    """Size and shape of the SYNTHETIC catalogue."""

    n_items: int = 10_000
    n_users: int = 1_000
    interactions_per_user: float = 40.0
    n_genres: int = 12
    n_subgenres: int = 6
    text_dim: int = 64
    audio_dim: int = 48
    new_item_share: float = 0.1
    start: int = 1_577_836_800  # 2020-01-01 UTC
    days: int = 730
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "n_items",
            "n_users",
            "n_genres",
            "n_subgenres",
            "text_dim",
            "audio_dim",
            "days",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"synth: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.new_item_share < 1:
            raise ConfigError(f"synth: new_item_share must be in [0, 1), got {self.new_item_share}")
        if self.interactions_per_user <= 0:
            raise ConfigError(
                f"synth: interactions_per_user must be > 0, got {self.interactions_per_user}"
            )


@dataclass
class _World:
    """The fixed structure every chunk draws from (genre centres, factor vectors, projections)."""

    genre_p: np.ndarray  # [G]
    sub_centres: np.ndarray  # [G, S, LATENT]
    lang_vecs: np.ndarray  # [L, FACTOR]
    timbre_vecs: np.ndarray  # [T, FACTOR]
    era_vec: np.ndarray  # [FACTOR]
    tempo_vec: np.ndarray  # [FACTOR]
    proj_text: np.ndarray  # [LATENT + FACTOR, text_dim]
    proj_audio: np.ndarray  # [LATENT + FACTOR, audio_dim]


def _world(cfg: SynthConfig) -> _World:
    rng = np.random.default_rng([cfg.seed, 0])
    genres = rng.normal(size=(cfg.n_genres, LATENT)) * 1.0
    subs = genres[:, None, :] + rng.normal(size=(cfg.n_genres, cfg.n_subgenres, LATENT)) * 0.5
    p = 1.0 / np.arange(1, cfg.n_genres + 1) ** 0.8
    return _World(
        genre_p=p / p.sum(),
        sub_centres=subs,
        lang_vecs=rng.normal(size=(len(LANGUAGES), FACTOR)) * 0.8,
        timbre_vecs=rng.normal(size=(N_TIMBRES, FACTOR)) * 0.8,
        era_vec=rng.normal(size=FACTOR) * 0.4,
        tempo_vec=rng.normal(size=FACTOR) * 0.4,
        proj_text=rng.normal(size=(LATENT + FACTOR, cfg.text_dim)) / np.sqrt(LATENT + FACTOR),
        proj_audio=rng.normal(size=(LATENT + FACTOR, cfg.audio_dim)) / np.sqrt(LATENT + FACTOR),
    )


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    noise = rng.standard_normal(size=shape, dtype=np.float32)
    noise *= np.float32(scale)
    return noise


def _item_chunk(cfg: SynthConfig, world: _World, c: int) -> dict[str, np.ndarray]:
    """Factors and embeddings of items [c*CHUNK, min((c+1)*CHUNK, n_items))."""
    lo, hi = c * CHUNK, min((c + 1) * CHUNK, cfg.n_items)
    n = hi - lo
    rng = np.random.default_rng([cfg.seed, 1, c])
    genre = rng.choice(cfg.n_genres, size=n, p=world.genre_p)
    sub = rng.integers(0, cfg.n_subgenres, size=n)
    lang = rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_P)
    era = rng.integers(1960, 2025, size=n)
    tempo = np.clip(rng.normal(100 + 6 * (genre % 7), 22, size=n), 55, 210)
    timbre = rng.integers(0, N_TIMBRES, size=n)
    popularity = rng.lognormal(0.0, 1.5, size=n)
    span = cfg.days * 86_400
    is_new = rng.random(n) < cfg.new_item_share
    release = np.where(
        is_new,
        cfg.start + (0.9 + 0.1 * rng.random(n)) * span,
        cfg.start - rng.random(n) * 5 * 365 * 86_400,
    )
    # float32 throughout: half the memory traffic of float64, and the output is float32 anyway
    semantic = world.sub_centres[genre, sub].astype(np.float32) + _noise(rng, (n, LATENT), 0.35)
    era_z, tempo_z = (
        ((era - 1992) / 18.0).astype(np.float32),
        ((tempo - 120) / 30.0).astype(np.float32),
    )
    text_f = (world.lang_vecs[lang] + era_z[:, None] * world.era_vec).astype(np.float32)
    audio_f = (world.timbre_vecs[timbre] + tempo_z[:, None] * world.tempo_vec).astype(np.float32)
    text = np.hstack([semantic, text_f]) @ world.proj_text.astype(np.float32) + _noise(
        rng, (n, cfg.text_dim), 0.1
    )
    audio = np.hstack([semantic, audio_f]) @ world.proj_audio.astype(np.float32) + _noise(
        rng, (n, cfg.audio_dim), 0.1
    )
    return {
        "index": np.arange(lo, hi),
        "genre": genre.astype(np.int16),
        "subgenre": sub.astype(np.int16),
        "language": lang.astype(np.int8),
        "era": era.astype(np.int16),
        "tempo": tempo.astype(np.float32),
        "timbre": timbre.astype(np.int8),
        "popularity": popularity.astype(np.float32),
        "release": release.astype(np.int64),
        "text": text.astype(np.float32),
        "audio": audio.astype(np.float32),
    }


def _id_array(prefix: str, index: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded index as a string array, built in Arrow (no per-item Python strings)."""
    digits = pc.utf8_lpad(
        pc.cast(pa.array(index.astype(np.int64)), pa.string()), width=width, padding="0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def item_ids(index: np.ndarray) -> pa.Array:
    return _id_array("synth-", index, 8)


def _names(template: str, n: int) -> pa.Array:
    return pa.array([template.format(k) for k in range(n)], pa.string())


def _items_table(ch: dict[str, np.ndarray], n_genres: int, n_subgenres: int) -> pa.Table:
    genre = _names("g{:02d}", n_genres).take(pa.array(ch["genre"].astype(np.int64)))
    sub_names = pa.array(
        [f"g{g:02d}.{k}" for g in range(n_genres) for k in range(n_subgenres)], pa.string()
    )
    subgenre = sub_names.take(pa.array(ch["genre"].astype(np.int64) * n_subgenres + ch["subgenre"]))
    language = pa.array(LANGUAGES, pa.string()).take(pa.array(ch["language"].astype(np.int64)))
    decade = pc.cast(pa.array((ch["era"] // 10 * 10).astype(np.int64)), pa.string())
    index = pc.cast(pa.array(ch["index"].astype(np.int64)), pa.string())
    text = pc.binary_join_element_wise(
        "SYNTHETIC item ",
        index,
        ": genre ",
        genre,
        ", subgenre ",
        subgenre,
        ", language ",
        language,
        ", ",
        decade,
        "s",
        "",
    )
    return pa.table(
        {
            "item_id": item_ids(ch["index"]),
            "text": text,
            "genre": genre,
            "subgenre": subgenre,
            "language": language,
            "era": pa.array(ch["era"]),
            "tempo": pa.array(ch["tempo"]),
            "timbre": _names("timbre{}", N_TIMBRES).take(pa.array(ch["timbre"].astype(np.int64))),
            "popularity": pa.array(ch["popularity"]),
            "release_timestamp": pa.array(ch["release"]),
        }
    )


def generate(cfg: SynthConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Write the SYNTHETIC catalogue to `out`: items.parquet (with the true factors),
    embeddings/{text,audio}.parquet, interactions.parquet, users.parquet (the true preferences),
    synth.json. Returns the summary written to synth.json."""
    from tqdm import tqdm

    out = Path(out)
    world = _world(cfg)
    n_chunks = -(-cfg.n_items // CHUNK)
    factors = {k: [] for k in ("genre", "language", "tempo", "timbre", "popularity", "release")}
    writers: dict[str, pq.ParquetWriter] = {}
    targets = {
        "items": out / "items.parquet",
        "text": out / "embeddings" / "text.parquet",
        "audio": out / "embeddings" / "audio.parquet",
    }
    meta = {**SYNTHETIC_META}
    with (
        atomic_path(targets["items"]) as t_items,
        atomic_path(targets["text"]) as t_text,
        atomic_path(targets["audio"]) as t_audio,
    ):
        paths = {"items": t_items, "text": t_text, "audio": t_audio}
        for c in tqdm(range(n_chunks), desc="SYNTHETIC items", unit="chunk", disable=not progress):
            ch = _item_chunk(cfg, world, c)
            for k in factors:
                factors[k].append(ch[k])
            ids = item_ids(ch["index"])
            tables = {
                "items": _items_table(ch, cfg.n_genres, cfg.n_subgenres),
                "text": embedding_table(ids, ch["text"], dim=ch["text"].shape[1], metadata={}),
                "audio": embedding_table(ids, ch["audio"], dim=ch["audio"].shape[1], metadata={}),
            }
            for key, table in tables.items():
                if key not in writers:
                    extra = (
                        {}
                        if key == "items"
                        else {
                            b"psrq.encoder": f"SYNTHETIC-{key}".encode(),
                            b"psrq.dim": str(
                                table.schema.field("embedding").type.list_size
                            ).encode(),
                        }
                    )
                    writers[key] = pq.ParquetWriter(
                        paths[key], table.schema.with_metadata({**meta, **extra})
                    )
                writers[key].write_table(table)
        for w in writers.values():
            w.close()
    items = {k: np.concatenate(v) for k, v in factors.items()}
    n_rows = _write_interactions(cfg, world, items, out / "interactions.parquet", progress)
    summary = {
        "synthetic": True,
        "generator": "psrq.data.synth v1",
        "config": asdict(cfg),
        "items": cfg.n_items,
        "users": cfg.n_users,
        "interactions": n_rows,
        "languages": list(LANGUAGES),
        "timbres": N_TIMBRES,
    }
    with atomic_path(out / "synth.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _genre_sampler(
    items: dict[str, np.ndarray], n_genres: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items sorted by genre, cumulative popularity in that order, popularity before each genre)."""
    order = np.argsort(items["genre"], kind="stable")
    cum = np.cumsum(items["popularity"][order].astype(np.float64))
    counts = np.bincount(items["genre"], minlength=n_genres)
    ends = np.cumsum(counts)
    before = np.concatenate([[0.0], cum[ends[:-1] - 1]]) if len(cum) else np.zeros(n_genres)
    total = np.where(counts > 0, cum[np.maximum(ends - 1, 0)] - before, 0.0)
    return order, cum, np.stack([before, total], axis=1)


def _write_interactions(
    cfg: SynthConfig, world: _World, items: dict[str, np.ndarray], path: Path, progress: bool
) -> int:
    from tqdm import tqdm

    order, cum, genre_range = _genre_sampler(items, cfg.n_genres)
    present = genre_range[:, 1] > 0
    end = cfg.start + cfg.days * 86_400
    n_rows = 0
    with atomic_path(path) as tmp, atomic_path(path.parent / "users.parquet") as users_tmp:
        writer = users_writer = None
        for c in tqdm(
            range(-(-cfg.n_users // CHUNK)),
            desc="SYNTHETIC interactions",
            unit="chunk",
            disable=not progress,
        ):
            rng = np.random.default_rng([cfg.seed, 2, c])
            lo, hi = c * CHUNK, min((c + 1) * CHUNK, cfg.n_users)
            n = hi - lo
            taste = rng.dirichlet(np.full(cfg.n_genres, 0.3), size=n) * present
            taste = (
                0.8 * taste / taste.sum(axis=1, keepdims=True)
                + 0.2 * (world.genre_p * present) / (world.genre_p * present).sum()
            )
            pref_lang = rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_P)
            pref_tempo = rng.normal(120, 25, size=n)
            pref_timbre = rng.integers(0, N_TIMBRES, size=n)
            activity = np.maximum(
                3,
                np.round(rng.lognormal(0, 0.8, size=n) / np.exp(0.32) * cfg.interactions_per_user),
            ).astype(np.int64)
            user = np.repeat(np.arange(n), activity)
            genre = (
                (rng.random(len(user))[:, None] > np.cumsum(taste, axis=1)[user])
                .sum(axis=1)
                .clip(0, cfg.n_genres - 1)
            )
            target = genre_range[genre, 0] + rng.random(len(user)) * genre_range[genre, 1]
            item = order[np.searchsorted(cum, target, side="right").clip(0, len(cum) - 1)]
            release = np.maximum(items["release"][item], cfg.start)
            ts = (release + rng.random(len(user)) * (end - release)).astype(np.int64)
            score = (
                0.8 * np.log(taste[user, items["genre"][item]] * cfg.n_genres)
                + 1.2 * (items["language"][item] == pref_lang[user])
                - 0.9 * np.abs(items["tempo"][item] - pref_tempo[user]) / 30.0
                + 1.0 * (items["timbre"][item] == pref_timbre[user])
                - 0.2
            )
            label = (rng.random(len(user)) < 1 / (1 + np.exp(-score))).astype(np.int8)
            table = pa.table(
                {
                    "user_id": _id_array("synth-user-", user + lo, 7),
                    "item_id": item_ids(item),
                    "timestamp": pa.array(ts),
                    "label": pa.array(label),
                }
            )
            users = pa.table(
                {
                    "user_id": _id_array("synth-user-", np.arange(lo, hi), 7),
                    "top_genre": [f"g{g:02d}" for g in taste.argmax(axis=1).tolist()],
                    "pref_language": [LANGUAGES[la] for la in pref_lang.tolist()],
                    "pref_tempo": pa.array(pref_tempo.astype(np.float32)),
                    "pref_timbre": [f"timbre{t}" for t in pref_timbre.tolist()],
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata(SYNTHETIC_META))
                users_writer = pq.ParquetWriter(
                    users_tmp, users.schema.with_metadata(SYNTHETIC_META)
                )
            writer.write_table(table)
            users_writer.write_table(users)
            n_rows += table.num_rows
        writer.close()
        users_writer.close()
    return n_rows
