from __future__ import annotations

from datetime import UTC, datetime

import pytest

from psrq.data.labels import LabelRule, apply_label_rule
from psrq.data.music4all import load_music4all
from psrq.errors import InputError

from .helpers import write_tsv


def _m4a(root, history=None):
    """A tiny Music4All tree in the published layout (tab-separated files, lyrics/, audios/)."""
    root.mkdir(parents=True, exist_ok=True)
    write_tsv(
        root / "id_information.csv",
        ["id", "artist", "song", "album_name"],
        [
            ["0009fFIM1eYThaPg", "Cheryl", "Rain on Me", "A Million Lights"],
            ["0010xmHR6UICBOYT", "Oleta Adams", "Get Here", "Circle of One"],
            ["002Jyd0vN4HyCpqL", "Taylor Swift", "Última", "Lover"],
        ],
    )
    write_tsv(
        root / "id_tags.csv",
        ["id", "tags"],
        [
            ["0009fFIM1eYThaPg", "pop,british,cheryl cole"],
            ["0010xmHR6UICBOYT", "soul,pop,ballad"],
            ["002Jyd0vN4HyCpqL", "pop"],
        ],
    )
    write_tsv(
        root / "id_genres.csv",
        ["id", "genres"],
        [
            ["0009fFIM1eYThaPg", "pop,dance pop"],
            ["0010xmHR6UICBOYT", "soul"],
            ["002Jyd0vN4HyCpqL", "pop"],
        ],
    )
    write_tsv(
        root / "id_lang.csv",
        ["id", "lang"],
        [["0009fFIM1eYThaPg", "en"], ["0010xmHR6UICBOYT", "en"], ["002Jyd0vN4HyCpqL", "es"]],
    )
    write_tsv(
        root / "id_metadata.csv",
        ["id", "spotify_id", "popularity", "release", "tempo"],
        [
            ["0009fFIM1eYThaPg", "x1", 40, 2014, 120.5],
            ["0010xmHR6UICBOYT", "x2", 50, 1990, 80.0],
            ["002Jyd0vN4HyCpqL", "x3", 70, 2019, 101.0],
        ],
    )
    (root / "lyrics").mkdir()
    (root / "lyrics" / "0009fFIM1eYThaPg.txt").write_text(
        "Rain on me, rain on me\n", encoding="utf-8"
    )
    (root / "audios").mkdir()
    (root / "audios" / "0010xmHR6UICBOYT.mp3").write_bytes(b"ID3")
    write_tsv(
        root / "listening_history.csv",
        ["user", "song", "timestamp"],
        history
        or [
            ["user_007XIjOr", "0009fFIM1eYThaPg", "2019-02-20 15:48:19"],
            ["user_007XIjOr", "0009fFIM1eYThaPg", "2019-02-21 09:00:00"],
            ["user_007XIjOr", "0010xmHR6UICBOYT", "2019-02-20 16:00:00"],
            ["user_00AbCdEf", "002Jyd0vN4HyCpqL", "2019-03-01 10:00:00"],
        ],
    )
    return root


def test_items_carry_metadata_lyrics_and_audio(tmp_path):
    data = load_music4all(_m4a(tmp_path / "m4a"))
    rows = {r["item_id"]: r for r in data.items.to_pylist()}
    rain = rows["0009fFIM1eYThaPg"]
    assert rain["text"].startswith(
        "Rain on Me by Cheryl. Album: A Million Lights. Genres: pop,dance pop."
    )
    assert "Lyrics: Rain on me, rain on me." in rain["text"] and "Language: en." in rain["text"]
    assert rain["audio_path"] is None
    assert rows["0010xmHR6UICBOYT"]["audio_path"].endswith("audios/0010xmHR6UICBOYT.mp3")
    assert rows["002Jyd0vN4HyCpqL"]["title"] == "Última"
    assert rows["0010xmHR6UICBOYT"]["meta_tempo"] == 80.0


def test_listening_pairs_first_play_and_play_count_rule(tmp_path):
    data = load_music4all(_m4a(tmp_path / "m4a"))
    rows = {(r["user_id"], r["item_id"]): r for r in data.interactions.to_pylist()}
    rain = rows[("user_007XIjOr", "0009fFIM1eYThaPg")]
    assert rain["play_count"] == 2
    assert rain["timestamp"] == int(datetime(2019, 2, 20, 15, 48, 19, tzinfo=UTC).timestamp())
    labels = apply_label_rule(data.interactions, LabelRule("play_count"), "m4a")
    by_pair = dict(zip(rows, labels.tolist(), strict=True))
    assert by_pair[("user_007XIjOr", "0009fFIM1eYThaPg")] == 1  # played repeatedly
    assert by_pair[("user_007XIjOr", "0010xmHR6UICBOYT")] == 0  # played once
    assert data.default_label_rule == "play_count"


def test_unknown_song_names_line(tmp_path):
    root = _m4a(
        tmp_path / "m4a",
        history=[
            ["u", "0009fFIM1eYThaPg", "2019-02-20 15:48:19"],
            ["u", "NOPE", "2019-02-20 15:48:19"],
        ],
    )
    with pytest.raises(
        InputError, match=r"listening_history\.csv: song 'NOPE' on line 3 is not in id_information"
    ):
        load_music4all(root)


def test_bad_timestamp_names_row(tmp_path):
    root = _m4a(tmp_path / "m4a", history=[["u", "0009fFIM1eYThaPg", "yesterday"]])
    with pytest.raises(
        InputError, match=r"timestamp value 'yesterday' at row 0 is not a date-time"
    ):
        load_music4all(root)


def test_duplicate_ids_and_bad_encoding(tmp_path):
    root = _m4a(tmp_path / "m4a")
    write_tsv(
        root / "id_information.csv",
        ["id", "artist", "song", "album_name"],
        [["a", "x", "y", "z"], ["a", "x", "y", "z"]],
    )
    with pytest.raises(InputError, match=r"duplicate id 'a' at rows 0, 1"):
        load_music4all(root)
    write_tsv(
        root / "id_information.csv",
        ["id", "artist", "song", "album_name"],
        [["a", "Beyoncé", "y", "z"]],
        "latin-1",
    )
    with pytest.raises(InputError, match=r"id_information\.csv: line 2 is not valid utf-8"):
        load_music4all(root)


def test_missing_file(tmp_path):
    root = _m4a(tmp_path / "m4a")
    (root / "id_lang.csv").unlink()
    with pytest.raises(InputError, match=r"id_lang\.csv not found"):
        load_music4all(root)


def test_cli_prepare_music4all(tmp_path):
    import json

    from typer.testing import CliRunner

    from psrq.cli import app

    root = _m4a(tmp_path / "m4a")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            "music4all",
            "--root",
            str(root),
            "--split",
            "0.5,0.25,0.25",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "samples" / "meta.json").read_text())
    assert meta["label_rule"]["kind"] == "play_count"
    assert sum(s["rows"] for s in meta["splits"].values()) == 3  # three (user, song) pairs
    assert (
        sum(s["positives"] for s in meta["splits"].values()) == 1
    )  # one song was played repeatedly
