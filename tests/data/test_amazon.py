from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pytest

from psrq.data.amazon import load_amazon2014, load_amazon2023
from psrq.data.labels import LabelRule, apply_label_rule
from psrq.errors import InputError


def _jsonl(path, records, *, python_literals=False, gz=False):
    text = "\n".join(repr(r) if python_literals else json.dumps(r) for r in records) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


REVIEWS_2014 = [
    {
        "reviewerID": "A1",
        "asin": "B001",
        "reviewerName": "x",
        "helpful": [0, 0],
        "reviewText": "ok",
        "overall": 5.0,
        "summary": "s",
        "unixReviewTime": 1_356_998_400,
        "reviewTime": "01 1, 2013",
    },
    {"reviewerID": "A1", "asin": "B002", "overall": 2.0, "unixReviewTime": 1_357_000_000},
    {"reviewerID": "A2", "asin": "B001", "overall": 4.0, "unixReviewTime": 1_357_100_000},
    {"reviewerID": "A2", "asin": "B003", "overall": 4.0, "unixReviewTime": 1_357_200_000},
]
META_2014 = [
    {
        "asin": "B001",
        "title": "Soft Baby Blanket",
        "brand": "Cozy",
        "categories": [["Baby", "Nursery", "Bedding"]],
        "description": "A soft blanket.",
        "imUrl": "http://x/1.jpg",
        "salesRank": {"Baby": 10},
    },
    {"asin": "B002", "title": "Bottle", "categories": [["Baby", "Feeding"]]},
    {"asin": "B003", "categories": []},  # no usable text: skipped and counted, its review too
]


def _image_features(path, asins, dim):
    rec = np.dtype([("asin", "S10"), ("features", "<f4", (dim,))])
    arr = np.zeros(len(asins), dtype=rec)
    arr["asin"] = [a.encode() for a in asins]
    arr["features"] = np.arange(len(asins) * dim, dtype=np.float32).reshape(len(asins), dim)
    arr.tofile(path)
    return path


def test_amazon2014_python_literal_meta_gz_rating_rule_and_images(tmp_path):
    reviews = _jsonl(tmp_path / "reviews_Baby_5.json.gz", REVIEWS_2014, gz=True)
    meta = _jsonl(tmp_path / "meta_Baby.json", META_2014, python_literals=True)
    feats = _image_features(tmp_path / "image_features_Baby.b", ["B002", "B001", "B999"], 4)
    data = load_amazon2014(reviews, meta, image_features=feats, image_dim=4)
    text = dict(
        zip(
            data.items.column("item_id").to_pylist(),
            data.items.column("text").to_pylist(),
            strict=True,
        )
    )
    assert (
        text["B001"]
        == "Soft Baby Blanket. Brand: Cozy. Categories: Baby > Nursery > Bedding. Description: A soft blanket."
    )
    assert "B003" not in text
    assert data.skipped == {"items_with_empty_text": 1, "reviews_of_skipped_items": 1}
    assert data.interactions.num_rows == 3
    labels = apply_label_rule(data.interactions, LabelRule("rating"), "r")
    assert labels.tolist() == [1, 0, 1]
    assert apply_label_rule(
        data.interactions, LabelRule("rating", rating_threshold=5), "r"
    ).tolist() == [1, 0, 0]
    image = data.embeddings["image"]
    assert image.column("item_id").to_pylist() == ["B002", "B001"]  # B999 is not an item
    assert image.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert image.column("embedding")[1].as_py() == [4.0, 5.0, 6.0, 7.0]


def test_amazon2014_image_file_of_wrong_size(tmp_path):
    from psrq.data.amazon import read_image_features

    (tmp_path / "f.b").write_bytes(b"x" * 100)
    with pytest.raises(
        InputError, match=r"f\.b: size 100 is not a multiple of the 16394-byte record"
    ):
        read_image_features(tmp_path / "f.b", pa.chunked_array([["B001"]]))


def test_amazon2014_unknown_item_and_bad_json(tmp_path):
    meta = _jsonl(tmp_path / "meta.json", META_2014[:2], python_literals=True)
    reviews = _jsonl(tmp_path / "r.json", [*REVIEWS_2014[:2], {**REVIEWS_2014[0], "asin": "B404"}])
    with pytest.raises(
        InputError, match=r"r\.json: item 'B404' on line 3 is not in the metadata file"
    ):
        load_amazon2014(reviews, meta)
    reviews.write_text(json.dumps(REVIEWS_2014[0]) + "\n{not json\n")
    with pytest.raises(InputError, match=r"r\.json: line 2 is not valid JSON"):
        load_amazon2014(reviews, meta)
    reviews.write_text(json.dumps({"reviewerID": "A1", "asin": "B001", "unixReviewTime": 1}) + "\n")
    with pytest.raises(InputError, match=r"r\.json: line 1 has no 'overall' field"):
        load_amazon2014(reviews, meta)


def test_amazon2023_ms_timestamps_and_parent_asin(tmp_path):
    reviews = _jsonl(
        tmp_path / "Baby_Products.jsonl",
        [
            {
                "rating": 5.0,
                "title": "Great",
                "text": "t",
                "images": [],
                "asin": "C1a",
                "parent_asin": "C1",
                "user_id": "U1",
                "timestamp": 1_588_687_728_923,
                "helpful_vote": 0,
                "verified_purchase": True,
            },
            {
                "rating": 3.0,
                "asin": "C2",
                "parent_asin": "C2",
                "user_id": "U1",
                "timestamp": 1_588_687_800_000,
            },
        ],
    )
    meta = _jsonl(
        tmp_path / "meta_Baby_Products.jsonl",
        [
            {
                "main_category": "Baby",
                "title": "Stroller",
                "average_rating": 4.5,
                "rating_number": 10,
                "features": ["Light", "Foldable"],
                "description": ["Goes anywhere."],
                "price": 99.0,
                "images": [{"thumb": "t", "large": "l", "variant": "MAIN", "hi_res": None}],
                "videos": [],
                "store": "Acme",
                "categories": ["Baby Products", "Strollers"],
                "details": {},
                "parent_asin": "C1",
                "bought_together": None,
            },
            {"title": "Bib", "parent_asin": "C2", "categories": []},
        ],
    )
    data = load_amazon2023(reviews, meta)
    assert data.interactions.column("timestamp").to_pylist() == [1_588_687_728, 1_588_687_800]
    assert data.interactions.column("item_id").to_pylist() == ["C1", "C2"]
    text = data.items.column("text").to_pylist()[0]
    assert (
        text
        == "Stroller. Store: Acme. Categories: Baby Products > Strollers. Features: Light, Foldable. Description: Goes anywhere."
    )
    assert apply_label_rule(data.interactions, LabelRule("rating"), "r").tolist() == [1, 0]


def test_cli_prepare_amazon2014_writes_image_embeddings(tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from psrq.cli import app

    reviews = _jsonl(tmp_path / "reviews.json", REVIEWS_2014)
    meta = _jsonl(tmp_path / "meta.json", META_2014, python_literals=True)
    feats = _image_features(tmp_path / "img.b", ["B001", "B002"], 8)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            "amazon2014",
            "--reviews",
            str(reviews),
            "--meta",
            str(meta),
            "--image-features",
            str(feats),
            "--image-dim",
            "8",
            "--split",
            "0.5,0.25,0.25",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    image = pq.read_table(out / "embeddings" / "image.parquet")
    assert image.num_rows == 2 and image.schema.metadata[b"psrq.dim"] == b"8"
    meta_json = json.loads((out / "samples" / "meta.json").read_text())
    assert (
        meta_json["label_rule"]["kind"] == "rating"
        and meta_json["skipped"]["items_with_empty_text"] == 1
    )
