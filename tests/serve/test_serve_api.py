"""Every endpoint of `psrq serve`, called over HTTP on a real server (SYNTHETIC artifacts)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import ADMIN_TOKEN, MAX_BATCH, MAX_BODY_MB, MAX_CANDIDATES, Server

pytestmark = pytest.mark.slow  # starts real servers / trains or exports models


def vectors(artifacts: dict[str, Any], modality: str) -> dict[str, np.ndarray]:
    from psrq.formats.embeddings import read_embedding_parquet

    e = read_embedding_parquet(Path(artifacts["embeddings"]) / f"{modality}.parquet", modality)
    return dict(zip(e.item_ids.tolist(), e.X, strict=True))


def new_vector(artifacts: dict[str, Any], modality: str, like: str, seed: int = 0) -> list[float]:
    """A new item's vector near an existing item's (SYNTHETIC)."""
    x = vectors(artifacts, modality)[like]
    return (x + 0.05 * np.random.default_rng(seed).normal(size=x.shape)).astype(np.float32).tolist()


# ---- health and version -----------------------------------------------------------------------
def test_health_ready_version_docs(full_server: Server, serve_artifacts: dict[str, Any]) -> None:
    from psrq.serve.loaded import manifest_fingerprint

    with full_server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert (
            ready["ready"] and ready["ranker"] and ready["text_encoder"] and ready["audio_encoder"]
        )
        v = c.get("/v1/version").json()
        assert v["psrq_version"] == __import__("psrq").__version__
        assert v["models"]["quantizer"]["fingerprint"] == manifest_fingerprint(
            serve_artifacts["quantizer"]
        )
        assert v["models"]["ranker"]["fingerprint"] == manifest_fingerprint(
            serve_artifacts["rankers"]["MCCA"]
        )
        assert v["loaded_at"].startswith("20") and v["load_seconds"] > 0
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
        for p in (
            "/v1/items/sids",
            "/v1/score",
            "/healthz",
            "/readyz",
            "/v1/version",
            "/admin/reload",
        ):
            assert p in spec["paths"]
        refs = set(re.findall(r"#/components/schemas/(\w+)", json.dumps(spec)))
        assert (
            {"SidsRequest", "ScoreRequest", "ReloadRequest"}
            <= refs
            <= set(spec["components"]["schemas"])
        )


# ---- SIDs for new items -----------------------------------------------------------------------
def test_sids_from_embeddings_match_the_quantizer(
    full_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer

    ids = serve_artifacts["item_ids"]
    items = [
        {
            "item_id": "new-both",
            "embeddings": {
                "text": new_vector(serve_artifacts, "text", ids[0]),
                "audio": new_vector(serve_artifacts, "audio", ids[0]),
            },
        },
        {
            "item_id": "new-text-only",
            "embeddings": {"text": new_vector(serve_artifacts, "text", ids[1], seed=1)},
        },
    ]
    with full_server.client() as c:
        r = c.post("/v1/items/sids", json={"items": items, "disambiguate": True})
    assert r.status_code == 200, r.text
    body = r.json()
    mq = MultimodalQuantizer.load(serve_artifacts["quantizer"])
    want = mq.transform(
        {
            "text": (
                ["new-both", "new-text-only"],
                np.array(
                    [items[0]["embeddings"]["text"], items[1]["embeddings"]["text"]], np.float32
                ),
            ),
            "audio": (["new-both"], np.array([items[0]["embeddings"]["audio"]], np.float32)),
        },
        item_ids=["new-both", "new-text-only"],
        disambiguate=True,
    )
    assert body["codebooks"] == ["text", "audio", "joint"]
    both, text_only = body["items"]
    for cb in ("text", "audio", "joint"):
        assert both["sids"][cb] == want.codes[cb][0].tolist()
        assert both["suffixes"][cb] == int(want.suffixes[cb][0])
    assert text_only["sids"]["audio"] is None and text_only["missing_modalities"] == ["audio"]
    assert text_only["sids"]["joint"] == want.codes["joint"][1].tolist()
    assert both["missing_modalities"] == [] and both["sources"] == {
        "text": "embedding",
        "audio": "embedding",
    }


def test_sids_from_text_use_the_text_encoder(
    full_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    from psrq.features.text import load_text_encoder
    from psrq.quantize.multimodal import MultimodalQuantizer

    text = "melancholic indie folk with acoustic guitar"
    with full_server.client() as c:
        r = c.post("/v1/items/sids", json={"items": [{"item_id": "t1", "text": text}]})
    assert r.status_code == 200, r.text
    item = r.json()["items"][0]
    x = load_text_encoder("minilm").encode([text])
    want = MultimodalQuantizer.load(serve_artifacts["quantizer"]).transform({"text": (["t1"], x)})
    assert item["sources"] == {"text": "text"} and item["missing_modalities"] == ["audio"]
    assert item["sids"]["text"] == want.codes["text"][0].tolist()
    assert item["sids"]["joint"] == want.codes["joint"][0].tolist()


def test_sids_from_an_uploaded_audio_file(full_server: Server, audio_clips_dir: Path) -> None:
    clip = sorted(
        p for p in audio_clips_dir.glob("*.ogg") if p.stat().st_size < MAX_BODY_MB * (1 << 20) * 0.9
    )[0]
    with full_server.client() as c, clip.open("rb") as f:
        r = c.post(
            "/v1/items/sids",
            data={"item_id": "clip-1"},
            files={"audio": (clip.name, f, "audio/ogg")},
        )
    assert r.status_code == 200, r.text
    item = r.json()["items"][0]
    assert item["sources"] == {"audio": "audio"} and item["missing_modalities"] == ["text"]
    assert item["sids"]["text"] is None
    assert len(item["sids"]["audio"]) == 2 and len(item["sids"]["joint"]) == 2


# ---- scoring ---------------------------------------------------------------------------------
def test_score_matches_the_ranker_best_first_with_top_k(
    full_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    from psrq.serve.ranker import Ranker

    ids = serve_artifacts["item_ids"]
    history, candidates = ids[:20], ids[100:140]
    with full_server.client() as c:
        r = c.post("/v1/score", json={"history": history, "candidates": candidates, "top_k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    want = Ranker.load(serve_artifacts["rankers"]["MCCA"]).score(history, candidates)
    assert [x["item_id"] for x in body["results"]] == [w["item_id"] for w in want[:10]]
    assert np.allclose(
        [x["logit"] for x in body["results"]], [w["logit"] for w in want[:10]], atol=1e-6
    )
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == "MCCA" and body["history_used"] == 20 and body["unknown_history"] == []
    assert {x["status"] for x in body["results"]} == {"known"}


def test_score_new_items_by_sids_and_by_embeddings_and_unknown_items(
    full_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.serve.ranker import Ranker

    ids = serve_artifacts["item_ids"]
    mq = MultimodalQuantizer.load(serve_artifacts["quantizer"])
    codes = {cb: mq.train_sids_.codes[cb][0].tolist() for cb in ("text", "audio", "joint")}
    vec = new_vector(serve_artifacts, "text", ids[5])
    request = {
        "history": [*ids[:5], "never-seen"],
        "candidates": [ids[10], "new-by-sids", "new-by-embedding", "ghost"],
        "new_items": [
            {"item_id": "new-by-sids", "sids": codes},
            {"item_id": "new-by-embedding", "embeddings": {"text": vec}},
        ],
    }
    with full_server.client() as c:
        r = c.post("/v1/score", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    status = {x["item_id"]: x["status"] for x in body["results"]}
    assert status == {
        ids[10]: "known",
        "new-by-sids": "new",
        "new-by-embedding": "new",
        "ghost": "unknown",
    }
    assert body["unknown_history"] == ["never-seen"]
    assigned = mq.transform({"text": (["new-by-embedding"], np.array([vec], np.float32))})
    new_sids = {
        "new-by-sids": {cb: np.array(v) for cb, v in codes.items()},
        "new-by-embedding": {
            cb: assigned.codes[cb][0].astype(np.int64)
            for cb in assigned.codebooks
            if assigned.present[cb][0]
        },
    }
    want = Ranker.load(serve_artifacts["rankers"]["MCCA"]).score(
        request["history"], request["candidates"], new_sids=new_sids
    )
    got = {x["item_id"]: x["logit"] for x in body["results"]}
    for w in want:
        assert got[w["item_id"]] == pytest.approx(w["logit"], abs=1e-6)


def test_single_modality_joint_is_the_modality_sid(
    text_only_server: tuple[Server, dict[str, Any]],
) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.serve.ranker import Ranker

    server, a = text_only_server
    ids = a["item_ids"]
    vec = new_vector(a, "text", ids[3])
    request = {
        "history": ids[:8],
        "candidates": [*ids[20:30], "n1", "n2"],
        "new_items": [
            {"item_id": "n1", "embeddings": {"text": vec}},
            {"item_id": "n2", "sids": {"text": [1, 2]}},
        ],
    }
    with server.client() as c:
        r = c.post("/v1/score", json=request)
        assert c.post(
            "/v1/items/sids", json={"items": [{"item_id": "n1", "embeddings": {"text": vec}}]}
        ).json()["codebooks"] == ["text"]
    assert r.status_code == 200, r.text
    status = {x["item_id"]: x["status"] for x in r.json()["results"]}
    assert status["n1"] == "new" and status["n2"] == "new"
    text = (
        MultimodalQuantizer.load(a["quantizer"])
        .transform({"text": (["n1"], np.array([vec], np.float32))})
        .codes["text"][0]
    )
    new_sids = {
        "n1": {"text": text, "joint": text},
        "n2": {"text": np.array([1, 2]), "joint": np.array([1, 2])},
    }
    want = Ranker.load(a["rankers"]["MCCA"]).score(
        request["history"], request["candidates"], new_sids=new_sids
    )
    got = {x["item_id"]: x["logit"] for x in r.json()["results"]}
    for w in want:
        assert got[w["item_id"]] == pytest.approx(w["logit"], abs=1e-6)


# ---- bad requests: every class gets a 4xx JSON body naming the field --------------------------
def _item(i: int, dim: int = 384) -> dict[str, Any]:
    return {"item_id": f"b{i}", "embeddings": {"text": [0.01] * dim}}


BAD_FULL: list[tuple[str, str, str, Any, int, str]] = [
    # (case, method, path, json body (or raw bytes), status, field)
    ("malformed json", "POST", "/v1/score", b"{not json", 422, "body"),
    ("missing candidates", "POST", "/v1/score", {"history": []}, 422, "candidates"),
    ("empty candidates", "POST", "/v1/score", {"candidates": []}, 422, "candidates"),
    ("extra field", "POST", "/v1/score", {"candidates": ["a"], "user": "u1"}, 422, "user"),
    ("wrong type", "POST", "/v1/score", {"candidates": "a"}, 422, "candidates"),
    ("top_k zero", "POST", "/v1/score", {"candidates": ["a"], "top_k": 0}, 422, "top_k"),
    (
        "too many candidates",
        "POST",
        "/v1/score",
        {"candidates": [f"c{i}" for i in range(MAX_CANDIDATES + 1)]},
        422,
        "candidates",
    ),
    (
        "duplicate candidate",
        "POST",
        "/v1/score",
        {"candidates": ["a", "b", "a"]},
        422,
        "candidates",
    ),
    (
        "code out of range",
        "POST",
        "/v1/score",
        {"candidates": ["x"], "new_items": [{"item_id": "x", "sids": {"joint": [1, 99]}}]},
        422,
        "new_items.0.sids.joint.1",
    ),
    (
        "wrong number of levels",
        "POST",
        "/v1/score",
        {"candidates": ["x"], "new_items": [{"item_id": "x", "sids": {"joint": [1, 2, 3]}}]},
        422,
        "new_items.0.sids.joint",
    ),
    (
        "unknown codebook",
        "POST",
        "/v1/score",
        {"candidates": ["x"], "new_items": [{"item_id": "x", "sids": {"lyrics": [1, 2]}}]},
        422,
        "new_items.0.sids.lyrics",
    ),
    (
        "undescribed new item",
        "POST",
        "/v1/score",
        {"candidates": ["x"], "new_items": [{"item_id": "x"}]},
        422,
        "new_items.0",
    ),
    (
        "duplicate new item",
        "POST",
        "/v1/score",
        {"candidates": ["x"], "new_items": [{"item_id": "x", "sids": {"joint": [1, 1]}}] * 2},
        422,
        "new_items.1.item_id",
    ),
    ("empty item batch", "POST", "/v1/items/sids", {"items": []}, 422, "items"),
    (
        "batch over the limit",
        "POST",
        "/v1/items/sids",
        {"items": [_item(i) for i in range(MAX_BATCH + 1)]},
        422,
        "items",
    ),
    (
        "wrong embedding width",
        "POST",
        "/v1/items/sids",
        {"items": [_item(0, dim=7)]},
        422,
        "items.0.embeddings.text",
    ),
    (
        "unknown modality",
        "POST",
        "/v1/items/sids",
        {"items": [{"item_id": "a", "embeddings": {"video": [0.1]}}]},
        422,
        "items.0.embeddings.video",
    ),
    (
        "non-numeric vector",
        "POST",
        "/v1/items/sids",
        {"items": [{"item_id": "a", "embeddings": {"text": ["x"]}}]},
        422,
        "items.0.embeddings.text.0",
    ),
    (
        "item with no content",
        "POST",
        "/v1/items/sids",
        {"items": [{"item_id": "a"}]},
        422,
        "items.0",
    ),
    (
        "duplicate item",
        "POST",
        "/v1/items/sids",
        {"items": [_item(0), _item(0)]},
        422,
        "items.1.item_id",
    ),
    (
        "text and text embedding",
        "POST",
        "/v1/items/sids",
        {"items": [{**_item(0), "text": "x"}]},
        422,
        "items.0.text",
    ),
    (
        "empty item id",
        "POST",
        "/v1/items/sids",
        {"items": [{"item_id": "", "text": "x"}]},
        422,
        "items.0.item_id",
    ),
    ("bad prefix", "GET", "/v1/explorer/codes?prefix=1,x", None, 422, "prefix"),
    ("prefix too deep", "GET", "/v1/explorer/codes?prefix=1,1,1", None, 422, "prefix"),
    (
        "unknown codebook (explorer)",
        "GET",
        "/v1/explorer/items?codebook=lyrics",
        None,
        422,
        "codebook",
    ),
    ("unknown item (explorer)", "GET", "/v1/explorer/items/not-an-item", None, 404, "item_id"),
    ("limit too large", "GET", "/v1/explorer/items?limit=100000", None, 422, "limit"),
    ("unknown route", "GET", "/v2/nothing", None, 404, "/v2/nothing"),
    ("wrong method", "GET", "/v1/score", None, 405, "/v1/score"),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "field"), BAD_FULL, ids=[b[0] for b in BAD_FULL]
)
def test_bad_requests_name_the_field(
    full_server: Server, case: str, method: str, path: str, body: Any, status: int, field: str
) -> None:
    with full_server.client() as c:
        if isinstance(body, bytes):
            r = c.request(method, path, content=body, headers={"content-type": "application/json"})
        else:
            r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["detail"][0]["field"] == field, payload
    assert payload["detail"][0]["reason"] and payload["error"]


def test_request_body_over_the_limit_is_413(full_server: Server) -> None:
    big = {"candidates": ["x" * 200] * 20_000}  # ~4 MB > MAX_BODY_MB
    with full_server.client() as c:
        r = c.post(
            "/v1/score",
            content=json.dumps(big).encode(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["detail"][0]["field"] == "body"
        chunks = (b"x" * (1 << 20) for _ in range(4))  # streamed, no Content-Length
        r = c.post("/v1/score", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"][0]["field"] == "body"


def test_wrong_content_type_and_bad_audio(full_server: Server) -> None:
    with full_server.client() as c:
        r = c.post("/v1/items/sids", content=b"hello", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["detail"][0]["field"] == "content-type"
        r = c.post(
            "/v1/items/sids",
            data={"item_id": "x"},
            files={"audio": ("x.ogg", b"not audio at all", "audio/ogg")},
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "audio"
        assert "unreadable" in r.json()["detail"][0]["reason"]
        r = c.post(
            "/v1/items/sids", data={"item_id": "x"}, files={"other": ("x.ogg", b"abc", "audio/ogg")}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "audio"
        r = c.post("/v1/items/sids", files={"audio": ("x.ogg", b"abc", "audio/ogg")})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "item_id"


def test_admin_needs_the_bearer_token(full_server: Server) -> None:
    with full_server.client() as c:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN}):
            r = c.post("/admin/reload", headers=headers)
            assert r.status_code == 401 and r.json()["detail"][0]["field"] == "authorization"


def test_bare_server_has_no_admin_no_ranker_no_encoders(bare_server: Server) -> None:
    with bare_server.client() as c:
        r = c.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 404 and "disabled" in r.json()["detail"][0]["reason"]
        r = c.post("/v1/score", json={"candidates": ["a"]})
        assert r.status_code == 409 and r.json()["detail"][0]["field"] == "ranker"
        r = c.post("/v1/items/sids", json={"items": [{"item_id": "a", "text": "folk"}]})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "items.0.text"
        r = c.post(
            "/v1/items/sids", data={"item_id": "x"}, files={"audio": ("x.ogg", b"abc", "audio/ogg")}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "audio"
        ready = c.get("/readyz").json()
        assert ready["ready"] and not ready["ranker"] and not ready["text_encoder"]
        assert set(c.get("/v1/version").json()["models"]) == {"quantizer"}


def test_server_refuses_to_start_on_a_corrupted_model_dir(
    serve_artifacts: dict[str, Any], tmp_path: Path
) -> None:
    import shutil
    import subprocess
    import sys

    broken = tmp_path / "quantizer"
    shutil.copytree(serve_artifacts["quantizer"], broken)
    with (broken / "normalization.npz").open("ab") as f:
        f.write(b"tampered")
    proc = subprocess.run(
        [sys.executable, "-m", "psrq.cli", "serve", "--quantizer", str(broken), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "normalization.npz is corrupted (checksum mismatch)" in proc.stderr


# ---- explorer JSON routes -----------------------------------------------------------------------
def test_explorer_routes(full_server: Server, serve_artifacts: dict[str, Any]) -> None:
    from psrq.quantize.multimodal import MultimodalQuantizer

    train = MultimodalQuantizer.load(serve_artifacts["quantizer"]).train_sids_
    joint = train.codes["joint"]
    with full_server.client() as c:
        summary = c.get("/v1/explorer/summary").json()
        assert summary == {
            "codebooks": ["text", "audio", "joint"],
            "n_levels": {"text": 2, "audio": 2, "joint": 2},
            "n_items": 300,
            "has_titles": True,
            "has_embeddings": True,
            "synthetic": True,
        }
        top = c.get("/v1/explorer/codes", params={"codebook": "joint"}).json()
        sizes = {ch["code"]: ch["size"] for ch in top["children"]}
        assert sizes == {
            int(k): int(v) for k, v in zip(*np.unique(joint[:, 0], return_counts=True), strict=True)
        }
        assert [ch["size"] for ch in top["children"]] == sorted(sizes.values(), reverse=True)
        code = top["children"][0]["code"]
        below = c.get(
            "/v1/explorer/codes", params={"codebook": "joint", "prefix": str(code)}
        ).json()
        assert below["level"] == 1 and below["prefix_size"] == sizes[code] == sum(
            ch["size"] for ch in below["children"]
        )
        items = c.get(
            "/v1/explorer/items", params={"codebook": "joint", "prefix": str(code), "limit": 5}
        ).json()
        assert items["total"] == sizes[code] and len(items["items"]) == 5
        assert all(
            x["codes"][0] == code and x["title"].startswith("SYNTHETIC track")
            for x in items["items"]
        )
        hits = c.get("/v1/explorer/search", params={"q": "syn_item_42"}).json()
        assert hits[0]["item_id"] == "syn_item_42"
        detail = c.get(
            "/v1/explorer/items/syn_item_42", params={"codebook": "joint", "k": 5}
        ).json()
        row = train.item_ids.tolist().index("syn_item_42")
        assert detail["codes"]["joint"] == joint[row].tolist()
        shared = [n["shared_levels"] for n in detail["code_neighbours"]]
        assert len(shared) == 5 and shared == sorted(shared, reverse=True)
        cos = [n["cosine"] for n in detail["embedding_neighbours"]]
        assert (
            len(cos) == 5
            and cos == sorted(cos, reverse=True)
            and "syn_item_42" not in [n["item_id"] for n in detail["embedding_neighbours"]]
        )
        png = c.get("/v1/explorer/cluster-sizes.png")
        assert (
            png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        )
        page = c.get("/")
        assert page.status_code == 200 and "Semantic-ID explorer" in page.text
