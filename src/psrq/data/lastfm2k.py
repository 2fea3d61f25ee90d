"""Last.fm-2k (HetRec 2011), the built-in data set: artists as items, dated tag events as interactions.

Carried in the package (src/psrq/_data/lastfm-2k/, non-commercial licence, see its readme.txt;
cite Cantador, Brusilovsky & Kuflik, HetRec 2011). Files are tab-separated with a header;
artists.dat is UTF-8 and tags.dat is latin-1 (checked: tags.dat does not decode as UTF-8).

* Items: every artist of artists.dat. text = "<name>. Tags: t1, t2, ..." with the artist's most
  used tags (by number of user tag assignments, ties by tag name), `n_tags` at most.
* Interactions: the first dated tag of each (user, artist) pair in user_taggedartists.dat, at
  00:00 UTC of its day/month/year; events before `min_year` (default 2005; the handful of
  1956-1979 dates are bogus) are dropped, as are events naming artists absent from artists.dat
  (390 such artist IDs in the published file); both counts are reported in `skipped`.
* user_artists.dat (play counts) has no timestamps, so it is **not** used: not for samples, not
  for popularity. Negative sampling uses the popularity of the tag events themselves.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import InputError

from .io import read_delimited
from .schema import DataSet, describe_rows, validate_interactions, validate_items

FILES = ("artists.dat", "tags.dat", "user_taggedartists.dat")


def builtin_root() -> Path:
    """Directory of the carried Last.fm-2k files (found through importlib.resources)."""
    return Path(str(importlib.resources.files("psrq") / "_data" / "lastfm-2k"))


def load_lastfm2k(
    root: str | Path | None = None, *, min_year: int = 2005, n_tags: int = 10
) -> DataSet:
    """Load Last.fm-2k from `root` (default: the built-in copy) into the psrq schema."""
    base = Path(root) if root is not None else builtin_root()
    artists = read_delimited(
        base / "artists.dat",
        columns=("id", "name"),
        encoding="utf-8",
        string_columns=("id", "name"),
        what="Last.fm artists.dat",
    )
    tags = read_delimited(
        base / "tags.dat",
        columns=("tagID", "tagValue"),
        encoding="latin-1",
        string_columns=("tagValue",),
        what="Last.fm tags.dat",
    )
    events = read_delimited(
        base / "user_taggedartists.dat",
        columns=("userID", "artistID", "tagID", "day", "month", "year"),
        encoding="utf-8",
        what="Last.fm user_taggedartists.dat",
    )
    items = _artist_items(artists, tags, events, n_tags)
    items, _ = validate_items(items, str(base / "artists.dat"))
    tag_times = _epoch_days(
        *(events.column(c).to_numpy(zero_copy_only=False) for c in ("day", "month", "year")),
        base / "user_taggedartists.dat",
    )

    def items_until(cutoff: int) -> pa.Table:
        """Items whose tag text counts only tag assignments dated up to `cutoff` (the train boundary).

        Assignments dated before `min_year` are bogus dates (they could be from any time), so
        they are left out here exactly as they are left out of the events."""
        years = events.column("year").to_numpy(zero_copy_only=False)
        earlier = events.filter(pa.array((tag_times <= cutoff) & (years >= min_year)))
        return validate_items(
            _artist_items(artists, tags, earlier, n_tags), str(base / "artists.dat")
        )[0]

    interactions, skipped = _first_tag_events(events, items.column("item_id"), min_year, base)
    interactions = validate_interactions(
        interactions, items.column("item_id"), str(base / "user_taggedartists.dat")
    )
    return DataSet(
        name="lastfm2k",
        items=items,
        interactions=interactions,
        sources=[base / f for f in FILES],
        skipped=skipped,
        default_label_rule="implicit",
        options={"min_year": min_year, "n_tags": n_tags},
        rebuild_items=items_until,
    )


def _artist_items(artists: pa.Table, tags: pa.Table, events: pa.Table, n_tags: int) -> pa.Table:
    """items: item_id, text, name, tags (comma-separated most used tags)."""
    tag_names = dict(
        zip(tags.column("tagID").to_pylist(), tags.column("tagValue").to_pylist(), strict=True)
    )
    counts = events.group_by(["artistID", "tagID"]).aggregate([([], "count_all")])
    top: dict[str, list[str]] = {}
    rows = sorted(
        zip(
            counts.column("artistID").to_pylist(),
            counts.column("tagID").to_pylist(),
            counts.column("count_all").to_pylist(),
            strict=True,
        ),
        key=lambda r: (r[0], -r[2], tag_names.get(r[1], "")),
    )
    for artist, tag, _ in rows:
        names = top.setdefault(str(artist), [])
        if len(names) < n_tags and tag in tag_names:
            names.append(tag_names[tag].strip())
    ids = artists.column("id").to_pylist()
    names = [n.strip() for n in artists.column("name").to_pylist()]
    tag_lists = [", ".join(top.get(i, [])) for i in ids]
    text = [
        f"{n}. Tags: {t}" if t else f"{n}." if n else ""
        for n, t in zip(names, tag_lists, strict=True)
    ]
    return pa.table(
        {"item_id": pa.array(ids, pa.string()), "text": text, "name": names, "tags": tag_lists}
    )


def _first_tag_events(
    events: pa.Table, item_ids: pa.ChunkedArray, min_year: int, base: Path
) -> tuple[pa.Table, dict[str, int]]:
    source = base / "user_taggedartists.dat"
    day, month, year = (
        events.column(c).to_numpy(zero_copy_only=False) for c in ("day", "month", "year")
    )
    ts = _epoch_days(day, month, year, source)
    keep_year = year >= min_year
    known = pc.is_in(
        pc.cast(events.column("artistID"), pa.string()), value_set=item_ids.combine_chunks()
    )
    known = known.to_numpy(zero_copy_only=False)
    dated = events.filter(pa.array(keep_year & known)).append_column(
        "timestamp", pa.array(ts[keep_year & known])
    )
    # first tag of each (user, artist): the minimum timestamp of the pair
    first = dated.group_by(["userID", "artistID"]).aggregate([("timestamp", "min")])
    table = pa.table(
        {
            "user_id": pc.cast(first.column("userID"), pa.string()),
            "item_id": pc.cast(first.column("artistID"), pa.string()),
            "timestamp": first.column("timestamp_min"),
        }
    )
    order = pc.sort_indices(
        table, [("timestamp", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")]
    )
    skipped = {
        "tag_assignments_before_min_year": int((~keep_year).sum()),
        "tag_assignments_unknown_artist": int((keep_year & ~known).sum()),
    }
    return table.take(order), skipped


def _epoch_days(day: np.ndarray, month: np.ndarray, year: np.ndarray, source: Path) -> np.ndarray:
    """Seconds since the epoch of 00:00 UTC on each date; raises naming the row of an impossible date."""
    bad = (month < 1) | (month > 12) | (day < 1) | (day > 31)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            f"{source}: impossible date {day[rows[0]]}/{month[rows[0]]}/{year[rows[0]]} at {describe_rows(rows)}"
        )
    dates = (year - 1970).astype("datetime64[Y]") + (month - 1).astype("timedelta64[M]")
    dates = dates.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    # a 31st of a 30-day month rolls into the next month; reject instead of silently moving it
    rolled = (dates.astype("datetime64[M]").astype(np.int64) % 12 + 1) != month
    if rolled.any():
        rows = np.flatnonzero(rolled)
        raise InputError(
            f"{source}: impossible date {day[rows[0]]}/{month[rows[0]]}/{year[rows[0]]} at {describe_rows(rows)}"
        )
    return dates.astype("datetime64[s]").astype(np.int64)
