from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from psrq.data.lastfm2k import builtin_root, load_lastfm2k
from psrq.errors import InputError

from .helpers import write_tsv


def _mini(root, *, tags_encoding="latin-1", artists_encoding="utf-8"):
    """A tiny copy of the HetRec format: 3 artists, 3 tags, a handful of dated tag events."""
    root.mkdir(parents=True, exist_ok=True)
    write_tsv(
        root / "artists.dat",
        ["id", "name", "url", "pictureURL"],
        [[1, "Röyksopp", "u", "p"], [2, "Metallica", "u", "p"], [3, "Björk", "u", "p"]],
        artists_encoding,
    )
    write_tsv(
        root / "tags.dat",
        ["tagID", "tagValue"],
        [[10, "electronic"], [11, "metal"], [12, "fußball"]],
        tags_encoding,
    )
    write_tsv(
        root / "user_taggedartists.dat",
        ["userID", "artistID", "tagID", "day", "month", "year"],
        [
            [5, 1, 10, 1, 4, 2009],  # (5, 1) tagged twice: the first date counts
            [5, 1, 12, 1, 3, 2009],
            [5, 2, 11, 1, 5, 2009],
            [6, 1, 10, 15, 6, 2010],
            [6, 2, 11, 1, 1, 1956],  # bogus year: dropped
            [6, 99, 11, 1, 1, 2010],  # artist absent from artists.dat: dropped
        ],
    )
    return root


def test_items_text_and_encodings(tmp_path):
    data = load_lastfm2k(_mini(tmp_path / "lf"))
    rows = {r["item_id"]: r for r in data.items.to_pylist()}
    assert rows["1"]["name"] == "Röyksopp"
    # electronic used twice, fußball once: most used first; latin-1 decoded correctly
    assert rows["1"]["text"] == "Röyksopp. Tags: electronic, fußball"
    assert rows["3"]["text"] == "Björk."  # no tags: just the name


def test_first_dated_tag_per_pair_and_year_filter(tmp_path):
    data = load_lastfm2k(_mini(tmp_path / "lf"))
    got = {(r["user_id"], r["item_id"]): r["timestamp"] for r in data.interactions.to_pylist()}
    day = lambda y, m, d: int(datetime(y, m, d, tzinfo=UTC).timestamp())  # noqa: E731
    assert got == {
        ("5", "1"): day(2009, 3, 1),
        ("5", "2"): day(2009, 5, 1),
        ("6", "1"): day(2010, 6, 15),
    }
    assert data.skipped == {
        "tag_assignments_before_min_year": 1,
        "tag_assignments_unknown_artist": 1,
    }


def test_tags_file_in_utf8_is_read_as_latin1_without_error_but_artists_must_be_utf8(tmp_path):
    root = _mini(tmp_path / "lf", artists_encoding="latin-1")
    with pytest.raises(InputError, match=r"artists\.dat: line 2 is not valid utf-8"):
        load_lastfm2k(root)


def test_missing_file_is_named(tmp_path):
    root = _mini(tmp_path / "lf")
    (root / "tags.dat").unlink()
    with pytest.raises(InputError, match=r"tags\.dat not found"):
        load_lastfm2k(root)


def test_missing_column_is_named(tmp_path):
    root = _mini(tmp_path / "lf")
    write_tsv(
        root / "user_taggedartists.dat",
        ["userID", "artistID", "tagID", "day", "month"],
        [[5, 1, 10, 1, 4]],
    )
    with pytest.raises(InputError, match=r"user_taggedartists\.dat: missing column\(s\) year"):
        load_lastfm2k(root)


def test_impossible_date_is_named(tmp_path):
    root = _mini(tmp_path / "lf")
    write_tsv(
        root / "user_taggedartists.dat",
        ["userID", "artistID", "tagID", "day", "month", "year"],
        [[5, 1, 10, 1, 4, 2009], [5, 2, 10, 31, 4, 2009]],
    )
    with pytest.raises(InputError, match=r"impossible date 31/4/2009 at row 1"):
        load_lastfm2k(root)


def test_builtin_data_is_the_real_hetrec_release():
    root = builtin_root()
    assert "Cantador" in (root / "readme.txt").read_text(
        encoding="latin-1"
    )  # the readme is latin-1 too
    data = load_lastfm2k()
    assert data.items.num_rows == 17_632
    # 71,062 distinct user-artist tag pairs minus bogus years and unknown artists
    assert 69_000 < data.interactions.num_rows < 71_062
    ts = data.interactions.column("timestamp").to_numpy()
    assert datetime.fromtimestamp(ts.min(), UTC).year >= 2005
    text = dict(
        zip(
            data.items.column("name").to_pylist(),
            data.items.column("text").to_pylist(),
            strict=True,
        )
    )
    assert text["Metallica"].startswith("Metallica. Tags: ") and "metal" in text["Metallica"]


def test_builtin_copy_loads_from_another_directory(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(builtin_root(), copy)
    assert load_lastfm2k(copy).interactions.num_rows == load_lastfm2k().interactions.num_rows


def test_item_text_only_uses_tags_from_the_training_period(tmp_path):
    """Tags are user events: item text built from valid/test-period tags would leak the future."""
    import numpy as np
    import pyarrow.parquet as pq

    from psrq.data.labels import LabelRule
    from psrq.data.prepare import prepare
    from psrq.data.protocol import ProtocolConfig
    from psrq.data.specs import dataset_spec

    result = prepare(
        dataset_spec("lastfm2k"),
        ProtocolConfig(label_rule=LabelRule(kind="auto")),
        tmp_path,
        verbose=False,
    )
    cutoff = result.meta["boundaries"]["train_until_ts"]
    raw = load_lastfm2k()
    items = pq.read_table(tmp_path / "items.parquet")
    tagged = dict(
        zip(items.column("item_id").to_pylist(), items.column("tags").to_pylist(), strict=True)
    )
    # Artists first tagged (by anyone) only after the train boundary must have no tag text.
    inter = raw.interactions
    ts = inter.column("timestamp").to_numpy()
    ids = np.asarray(inter.column("item_id").to_pylist())
    first_seen = {}
    for item, t in zip(ids, ts, strict=True):
        first_seen[item] = min(t, first_seen.get(item, t))
    late = [i for i, t in first_seen.items() if t > cutoff]
    assert len(late) > 100  # the real data has many artists first tagged in valid/test
    assert all(tagged[i] == "" for i in late)
    # ... while the unfiltered loader (all periods) does give them tags: the check can fail.
    unfiltered = dict(
        zip(
            raw.items.column("item_id").to_pylist(),
            raw.items.column("tags").to_pylist(),
            strict=True,
        )
    )
    assert sum(unfiltered[i] != "" for i in late) > 100
    assert result.meta["item_content_until"] == result.meta["boundaries"]["train_until"]
