"""Load test of `psrq serve` on loopback: sustained req/s and latency percentiles, 1 and 2 workers.

    .venv/bin/python benchmarks/bench_serve.py --run runs/lastfm2k --duration 60
    .venv/bin/python benchmarks/bench_serve.py --synthetic 2000 --duration 60   # SYNTHETIC artifacts

For each worker count, starts `psrq serve` (127.0.0.1, a free port), then for each scenario runs
a bounded asyncio httpx client (`--concurrency` connections, each sending its next request when
the previous answers) for `--duration` seconds:
- score: POST /v1/score, 100 known candidates + a 20-item history (distinct random draws);
- sids:  POST /v1/items/sids, one new item with precomputed embeddings for every modality.
Prints a Markdown table (req/s, p50/p95/p99 ms, errors, CPU used by the server's process tree
and by the client). The client shares the machine's cores with the server, as it would not in
production; on a shared machine, requests per server CPU-second is the figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))
from bench_scale import tree_pids  # benchmarks/ is on sys.path when run as a script
from serve_fixtures import start_server, stop_server


def artifacts_from_run(run: Path) -> tuple[list[str], dict[str, Any]]:
    from psrq.serve.cli import _run_paths

    paths = _run_paths(run)
    args = ["--run", str(run)]
    return args, paths


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the walk
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def make_payloads(paths: dict[str, Any], n: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.serve.ranker import Ranker

    rng = np.random.default_rng(seed)
    ranker = Ranker.load(paths["ranker"])
    known = ranker.tables.item_ids[2:].astype(str)
    score = []
    for _ in range(n):
        pick = rng.choice(len(known), size=120, replace=False)
        score.append(
            {"history": known[pick[:20]].tolist(), "candidates": known[pick[20:]].tolist()}
        )
    folder = Path(paths["embeddings"])
    embs = {m.stem: read_embedding_parquet(m, m.stem) for m in sorted(folder.glob("*.parquet"))}
    sids = []
    for i in range(n):
        vectors = {}
        for m, e in embs.items():
            x = e.X[rng.integers(len(e.X))]
            vectors[m] = (x + 0.01 * rng.normal(size=x.shape)).astype(np.float32).tolist()
        sids.append({"items": [{"item_id": f"bench-new-{i}", "embeddings": vectors}]})
    return {"score": score, "sids": sids}


async def drive(
    url: str, path: str, payloads: list[dict[str, Any]], duration: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=payloads[i % len(payloads)])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok
                i += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(lat),
        "errors": errors,
        "rps": len(lat) / elapsed,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", type=Path, help="a `psrq run` output directory (runs/lastfm2k)")
    ap.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="build SYNTHETIC artifacts with this many items instead",
    )
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--scenarios", default="score,sids")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    if args.run:
        server_args, paths = artifacts_from_run(args.run)
        source = f"`psrq run` artifacts in {args.run}"
    else:
        from psrq.serve.synthetic import build_service_artifacts

        a = build_service_artifacts(
            tmp / "artifacts",
            n_items=args.synthetic or 2000,
            n_users=1000,
            codebook_size=32,
            n_levels=3,
            models=("MCCA",),
        )
        paths = {
            "ranker": a["rankers"]["MCCA"],
            "embeddings": a["embeddings"],
            "quantizer": a["quantizer"],
        }
        server_args = ["--quantizer", str(a["quantizer"]), "--ranker", str(a["rankers"]["MCCA"])]
        source = f"SYNTHETIC artifacts ({args.synthetic or 2000} items)"
    payloads = make_payloads(paths, 500)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        server = start_server(
            [*server_args, "--workers", str(workers)], tmp / f"server-{workers}.log", timeout=300
        )
        try:
            for scenario in args.scenarios.split(","):
                path = "/v1/score" if scenario == "score" else "/v1/items/sids"
                asyncio.run(
                    drive(server.url, path, payloads[scenario], 3.0, args.concurrency)
                )  # warm-up
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                server0 = tree_cpu_seconds(server.process.pid)
                res = asyncio.run(
                    drive(server.url, path, payloads[scenario], args.duration, args.concurrency)
                )
                server_cpu = (tree_cpu_seconds(server.process.pid) - server0) / args.duration
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                client_cpu = (
                    cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
                ) / args.duration
                res["server_cpu"] = server_cpu
                rows.append((workers, scenario, res, client_cpu))
                print(
                    f"workers={workers} {scenario}: {res} client CPU {client_cpu:.2f} cores",
                    flush=True,
                )
        finally:
            stop_server(server.process)
    print(
        f"\n{source}; {args.duration:.0f} s per row, {args.concurrency} concurrent connections, loopback\n"
    )
    print(
        "| workers | endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU (cores) | req per server CPU-second | client CPU (cores) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for workers, scenario, r, cpu in rows:
        endpoint = (
            "POST /v1/score (100 candidates, 20 history)"
            if scenario == "score"
            else "POST /v1/items/sids (1 item, embeddings)"
        )
        per_cpu = r["rps"] / r["server_cpu"] if r["server_cpu"] > 0 else float("nan")
        print(
            f"| {workers} | {endpoint} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | {r['server_cpu']:.2f} | {per_cpu:.0f} | {cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
