"""Music4All (Santana et al., IWSSIP 2020) from its published files, for users who have them.

Files under ROOT (tab-separated, UTF-8, one header line):

| file | columns used |
|---|---|
| id_information.csv | id, artist, song, album_name |
| id_tags.csv | id, tags (comma-separated) |
| id_genres.csv | id, genres (comma-separated) |
| id_lang.csv | id, lang |
| id_metadata.csv (optional) | id, release, tempo, ... (kept as raw columns when present) |
| listening_history.csv | user, song, timestamp ("YYYY-MM-DD HH:MM[:SS]", UTC) |
| lyrics/<id>.txt (optional) | the lyrics |
| audios/<id>.mp3 (optional) | the 30 s clip -> `audio_path` |

Interactions are one row per (user, song): `timestamp` = the first play, `play_count` = the
number of plays. The paper's label rule ("played repeatedly" = 1, played once = 0) is the
`play_count` rule, this loader's default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import InputError

from .io import read_delimited
from .schema import DataSet, OnEmptyText, describe_rows, validate_interactions, validate_items

REQUIRED_FILES = (
    "id_information.csv",
    "id_tags.csv",
    "id_genres.csv",
    "id_lang.csv",
    "listening_history.csv",
)
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def music4all_inputs(root: Path) -> list[Path]:
    files = [root / f for f in (*REQUIRED_FILES, "id_metadata.csv") if (root / f).exists()]
    return files + [d for d in (root / "lyrics", root / "audios") if d.is_dir()]


def load_music4all(
    root: str | Path, *, lyrics_chars: int = 1000, on_empty_text: OnEmptyText = "raise"
) -> DataSet:
    """Load Music4All from `root` into the psrq schema (items = tracks)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"Music4All directory not found: {base}")
    info = _read(base, "id_information.csv", ("id", "artist", "song", "album_name"))
    meta_cols: dict[str, pa.Table] = {
        "tags": _read(base, "id_tags.csv", ("id", "tags")),
        "genres": _read(base, "id_genres.csv", ("id", "genres")),
        "lang": _read(base, "id_lang.csv", ("id", "lang")),
    }
    items = _join_on_id(info, meta_cols, base)
    if (base / "id_metadata.csv").is_file():
        extra = _read(base, "id_metadata.csv", ("id",))
        items = items.join(
            extra.rename_columns([c if c == "id" else f"meta_{c}" for c in extra.column_names]),
            "id",
            join_type="left outer",
        )
    items = _add_lyrics_and_audio(items, base, lyrics_chars)
    items = items.append_column("text", pa.array(_compose_text(items), pa.string()))
    items = items.rename_columns(
        ["item_id" if c == "id" else "title" if c == "song" else c for c in items.column_names]
    )
    items, n_blank = validate_items(
        items, str(base / "id_information.csv"), on_empty_text=on_empty_text
    )
    interactions = _listening_pairs(base / "listening_history.csv", items.column("item_id"))
    interactions = validate_interactions(
        interactions, items.column("item_id"), str(base / "listening_history.csv")
    )
    return DataSet(
        name="music4all",
        items=items,
        interactions=interactions,
        sources=music4all_inputs(base),
        skipped={"items_with_empty_text": n_blank} if n_blank else {},
        default_label_rule="play_count",
        options={"lyrics_chars": lyrics_chars},
    )


def _read(base: Path, name: str, columns: tuple[str, ...]) -> pa.Table:
    return read_delimited(
        base / name, columns=columns, string_columns=[c for c in columns], what=f"Music4All {name}"
    )


def _join_on_id(info: pa.Table, others: dict[str, pa.Table], base: Path) -> pa.Table:
    ids = info.column("id")
    if len(pc.unique(ids)) != len(ids):
        counts = pc.value_counts(ids).flatten()
        dup = pc.filter(counts[0], pc.greater(counts[1], 1))[0]
        rows = np.flatnonzero(pc.equal(ids, dup).to_numpy(zero_copy_only=False))
        raise InputError(
            f"{base / 'id_information.csv'}: duplicate id {dup.as_py()!r} at {describe_rows(rows)}"
        )
    out = info
    for col, table in others.items():
        out = out.join(table.select(["id", col]), "id", join_type="left outer")
    return out.take(pc.sort_indices(out, [("id", "ascending")]))


def _add_lyrics_and_audio(items: pa.Table, base: Path, lyrics_chars: int) -> pa.Table:
    ids = items.column("id").to_pylist()
    lyrics_dir, audio_dir = base / "lyrics", base / "audios"
    lyrics: list[str | None] = [None] * len(ids)
    if lyrics_dir.is_dir():
        for k, i in enumerate(ids):
            f = lyrics_dir / f"{i}.txt"
            if f.is_file():
                try:
                    lyrics[k] = f.read_text(encoding="utf-8").strip()[
                        : max(lyrics_chars, 0) or None
                    ]
                except UnicodeDecodeError as e:
                    raise InputError(f"{f}: not valid UTF-8 at byte {e.start}") from None
    audio = [
        str((audio_dir / f"{i}.mp3").resolve()) if (audio_dir / f"{i}.mp3").is_file() else None
        for i in ids
    ]
    return items.append_column("lyrics", pa.array(lyrics, pa.string())).append_column(
        "audio_path", pa.array(audio, pa.string())
    )


def _compose_text(items: pa.Table) -> list[str]:
    """ "<song> by <artist>. Album: ... Genres: ... Tags: ... Language: ... Lyrics: ..." (present fields only)."""
    cols = {
        c: items.column(c).to_pylist()
        for c in ("song", "artist", "album_name", "genres", "tags", "lang", "lyrics")
    }
    texts = []
    for k in range(items.num_rows):
        song, artist = (cols["song"][k] or "").strip(), (cols["artist"][k] or "").strip()
        head = (
            f"{song} by {artist}."
            if song and artist
            else (f"{song or artist}." if song or artist else "")
        )
        parts = [head] if head else []
        for label, key in (
            ("Album", "album_name"),
            ("Genres", "genres"),
            ("Tags", "tags"),
            ("Language", "lang"),
            ("Lyrics", "lyrics"),
        ):
            value = (cols[key][k] or "").strip().rstrip(".")
            if value:
                parts.append(f"{label}: {value}.")
        texts.append(" ".join(parts))
    return texts


def parse_datetimes(col: pa.ChunkedArray | pa.Array, source: str, column: str) -> np.ndarray:
    """int64 seconds (UTC) from date-time strings in one of DATETIME_FORMATS; names unparseable rows."""
    result = None
    for fmt in DATETIME_FORMATS:
        parsed = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
        result = parsed if result is None else pc.coalesce(result, parsed)
    bad = np.flatnonzero(result.is_null().to_numpy(zero_copy_only=False))
    if len(bad):
        raise InputError(
            f"{source}: column {column} value {col[int(bad[0])].as_py()!r} at {describe_rows(bad)} is not a date-time "
            f"(expected e.g. 2019-02-20 15:48:19)"
        )
    return pc.cast(result, pa.int64()).to_numpy(zero_copy_only=False)


def _listening_pairs(path: Path, item_ids: pa.ChunkedArray) -> pa.Table:
    history = read_delimited(
        path,
        columns=("user", "song", "timestamp"),
        string_columns=("user", "song", "timestamp"),
        what="Music4All listening_history.csv",
    )
    known = pc.is_in(history.column("song"), value_set=item_ids.combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    if not known.all():
        bad = np.flatnonzero(~known)
        raise InputError(
            f"{path}: song {history.column('song')[int(bad[0])].as_py()!r} on line {int(bad[0]) + 2} is not in "
            f"id_information.csv ({len(bad)} listening events name unknown songs)"
        )
    ts = parse_datetimes(history.column("timestamp"), str(path), "timestamp")
    events = pa.table(
        {"user_id": history.column("user"), "item_id": history.column("song"), "timestamp": ts}
    )
    pairs = events.group_by(["user_id", "item_id"]).aggregate(
        [("timestamp", "min"), ([], "count_all")]
    )
    table = pa.table(
        {
            "user_id": pairs.column("user_id"),
            "item_id": pairs.column("item_id"),
            "timestamp": pairs.column("timestamp_min"),
            "play_count": pc.cast(pairs.column("count_all"), pa.int64()),
        }
    )
    return table.take(
        pc.sort_indices(
            table, [("timestamp", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")]
        )
    )
