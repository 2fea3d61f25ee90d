"""Concurrent scoring equals sequential scoring; a reload under load fails no request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest
from serve_fixtures import ADMIN_TOKEN, Server

pytestmark = pytest.mark.slow  # starts real servers / trains or exports models


def score_requests(artifacts: dict[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n distinct score requests; 3 of 4 carry new items (the path that extends the item tables)."""
    from psrq.quantize.multimodal import MultimodalQuantizer

    rng = np.random.default_rng(seed)
    ids = artifacts["item_ids"]
    train = MultimodalQuantizer.load(artifacts["quantizer"]).train_sids_
    out = []
    for i in range(n):
        history = [
            ids[j] for j in rng.choice(len(ids), size=int(rng.integers(0, 25)), replace=False)
        ]
        candidates = [ids[j] for j in rng.choice(len(ids), size=100, replace=False)]
        request: dict[str, Any] = {"history": history, "candidates": candidates}
        if i % 4:
            rows = rng.choice(len(train.item_ids), size=3, replace=False)
            new = [
                {
                    "item_id": f"new-{i}-{k}",
                    "sids": {cb: train.codes[cb][r].tolist() for cb in ("text", "audio", "joint")},
                }
                for k, r in enumerate(rows)
            ]
            request["new_items"] = new
            request["candidates"] = candidates[:97] + [x["item_id"] for x in new]
            request["history"] = [*history, new[0]["item_id"]]
        out.append(request)
    return out


async def _post_all(
    url: str, requests: list[dict[str, Any]], concurrency: int
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def one(body: dict[str, Any]) -> httpx.Response:
            async with sem:
                return await client.post("/v1/score", json=body)

        return await asyncio.gather(*(one(b) for b in requests))


def test_concurrent_scoring_equals_sequential(
    full_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    requests = score_requests(serve_artifacts, 240)
    with full_server.client() as c:
        sequential = [c.post("/v1/score", json=r) for r in requests]
    concurrent = asyncio.run(_post_all(full_server.url, requests, concurrency=32))
    assert all(r.status_code == 200 for r in sequential + concurrent)
    for s, p in zip(sequential, concurrent, strict=True):
        assert s.json()["results"] == p.json()["results"]
    statuses = {x["status"] for r in sequential for x in r.json()["results"]}
    assert statuses == {"known", "new"}


async def _load_during_reloads(
    server: Server, requests: list[dict[str, Any]], reloads: list[dict[str, str]]
) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """Score in 8 concurrent loops while reloading; returns (score responses, reload responses)."""
    stop = asyncio.Event()
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:

        async def loop(k: int) -> None:
            i = k
            while not stop.is_set() and i < 10_000:  # bounded
                responses.append(await client.post("/v1/score", json=requests[i % len(requests)]))
                i += 8

        async def admin() -> list[httpx.Response]:
            done = []
            await asyncio.sleep(0.5)
            for body in reloads:
                done.append(
                    await client.post(
                        "/admin/reload",
                        json=body,
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                )
                await asyncio.sleep(0.5)
            stop.set()
            return done

        loops = [asyncio.create_task(loop(k)) for k in range(8)]
        reload_responses = await admin()
        await asyncio.gather(*loops)
    return responses, reload_responses


def test_reload_under_load_fails_no_request(
    reload_server: Server, serve_artifacts: dict[str, Any]
) -> None:
    rankers = serve_artifacts["rankers"]
    requests = score_requests(serve_artifacts, 40, seed=1)
    reloads = [
        {"ranker": str(rankers["DIN"])},
        {},
        {"ranker": str(rankers["MCCA"])},
        {"ranker": str(rankers["DIN"])},
    ]
    responses, reload_responses = asyncio.run(
        _load_during_reloads(reload_server, requests, reloads)
    )
    assert [r.status_code for r in reload_responses] == [200] * 4, [
        r.text for r in reload_responses
    ]
    assert [r.json()["generation"] for r in reload_responses] == [1, 2, 3, 4]
    assert len(responses) > 40
    failed = [r for r in responses if r.status_code != 200]
    assert not failed, failed[0].text
    models = {r.json()["model"] for r in responses}
    assert models == {"MCCA", "DIN"}  # requests were served by both sides of the swaps
    with reload_server.client() as c:
        v = c.get("/v1/version").json()
        assert v["generation"] == 4 and v["models"]["ranker"]["path"] == str(rankers["DIN"])
        assert c.post("/v1/score", json=requests[0]).json()["model"] == "DIN"


def test_failed_reload_keeps_the_current_models(reload_server: Server, tmp_path: Any) -> None:
    with reload_server.client() as c:
        before = c.get("/v1/version").json()
        r = c.post(
            "/admin/reload",
            json={"ranker": str(tmp_path / "missing")},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "ranker"
        r = c.post(
            "/admin/reload", json={"ranker": 3}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "ranker"
        assert c.get("/v1/version").json() == before


def test_reload_reaches_every_worker(serve_artifacts: dict[str, Any], tmp_path: Any) -> None:
    from serve_fixtures import start_server, stop_server

    a = serve_artifacts
    server = start_server(
        [
            "--quantizer",
            str(a["quantizer"]),
            "--ranker",
            str(a["rankers"]["MCCA"]),
            "--workers",
            "2",
        ],
        tmp_path / "workers.log",
        token=ADMIN_TOKEN,
    )
    try:
        body = {"history": a["item_ids"][:5], "candidates": a["item_ids"][10:20]}
        r = httpx.post(
            f"{server.url}/admin/reload",
            json={"ranker": str(a["rankers"]["DIN"])},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["generation"] == 1
        seen: list[str] = []
        for _ in range(100):  # bounded: new connections land on either worker
            resp = httpx.post(f"{server.url}/v1/score", json=body, timeout=30)
            assert resp.status_code == 200
            seen.append(resp.json()["model"])
            if seen[-20:] == ["DIN"] * 20:
                break
            time.sleep(0.1)
        assert seen[-20:] == ["DIN"] * 20, seen
        versions = [httpx.get(f"{server.url}/v1/version", timeout=30).json() for _ in range(40)]
        assert len({v["worker_pid"] for v in versions}) == 2  # both workers answered
        assert {v["generation"] for v in versions} == {1}
        assert {v["models"]["ranker"]["path"] for v in versions} == {str(a["rankers"]["DIN"])}
    finally:
        stop_server(server.process)
