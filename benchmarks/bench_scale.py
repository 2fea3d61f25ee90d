"""Streamed `psrq quantize` on a SYNTHETIC catalogue in Parquet shards: time and peak RSS vs n.

Commands (what benchmarks/RESULTS.md "## Scale" records):

    .venv/bin/python benchmarks/bench_scale.py shards --items 10000000 --out /work/scale-data/items10m
    .venv/bin/python benchmarks/bench_scale.py quantize --shards /work/scale-data/items10m --limit 1000000 2000000 10000000 --engine local -- --modalities text
    .venv/bin/python benchmarks/bench_scale.py quantize --shards /work/scale-data/items10m --limit 1000000 10000000 --engine ray -- --modalities text

`shards` writes one Parquet shard per 100,000-item chunk of psrq.data.synth (SYNTHETIC:
item_id, emb_text 64-d, emb_audio 48-d float32; row groups of 65,536 rows); the first n items
are the first n/100,000 shards, so `--limit` runs on a prefix of the same catalogue.

`quantize` runs `psrq quantize --items <shards> --engine E` (PSRQ, 3 levels x 256 codes per
codebook: text, audio and joint; fit on a seeded 65,536-row sample; assign in 65,536-row batches)
in a subprocess and polls, every 0.2 s, the memory of that process and all its descendants (Ray's
GCS, raylet and workers included) from /proc: the summed VmRSS ("peak tree RSS"), which counts
Ray's object store (in /dev/shm) and the shared libraries once per process that maps them, and
the summed Pss ("peak tree PSS"), which charges each shared page once in all; plus the largest
single process by Pss (with its name and RSS) and the process count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_shards(n_items: int, out: Path, text_dim: int, audio_dim: int) -> dict:
    """SYNTHETIC items with both embeddings, one shard per generator chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from psrq.data.synth import CHUNK, SYNTHETIC_META, SynthConfig, _item_chunk, _world, item_ids

    cfg = SynthConfig(n_items=n_items, n_users=1, text_dim=text_dim, audio_dim=audio_dim)
    world = _world(cfg)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    n_chunks = -(-n_items // CHUNK)
    for c in range(n_chunks):
        path = out / f"part-{c:05d}.parquet"
        if path.exists():
            continue
        ch = _item_chunk(cfg, world, c)
        table = pa.table(
            {
                "item_id": item_ids(ch["index"]),
                "emb_text": pa.FixedSizeListArray.from_arrays(
                    pa.array(ch["text"].ravel()), text_dim
                ),
                "emb_audio": pa.FixedSizeListArray.from_arrays(
                    pa.array(ch["audio"].ravel()), audio_dim
                ),
            }
        ).replace_schema_metadata(SYNTHETIC_META)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=65_536)
        os.replace(tmp, path)
    return {
        "items": n_items,
        "shards": n_chunks,
        "seconds": round(time.perf_counter() - started, 1),
    }


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return pids


def _process_memory(pid: int) -> tuple[int, int, str] | None:
    """(VmRSS kB, Pss kB, short name) of one process; None when it has gone.

    Pss (proportional set size) charges each shared page 1/n to each of the n processes mapping
    it, so summed over a tree it counts Ray's shared object store and the shared libraries once,
    unlike VmRSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = {ln.split(":")[0]: ln.split()[1] for ln in f if ":" in ln}
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    name = " ".join(a.decode(errors="replace").rsplit("/", 1)[-1] for a in argv[:3] if a)
    return int(fields.get("Rss", 0)), int(fields.get("Pss", 0)), name[:60]


def _tree_rss(pid: int) -> dict[str, float | int | str]:
    """Memory of `pid` and all its descendants: summed VmRSS and Pss (MB), the largest single
    process by Pss (its Pss MB, name and RSS) and the process count."""
    procs = [m for p in tree_pids(pid) if (m := _process_memory(p)) is not None]
    largest = max(procs, default=(0, 0, ""), key=lambda m: m[1])  # by Pss
    return {
        "rss_mb": sum(m[0] for m in procs) / 1024,
        "pss_mb": sum(m[1] for m in procs) / 1024,
        "largest_mb": largest[1] / 1024,
        "largest": f"{largest[2]} (RSS {largest[0] / 1024:.0f} MB)",
        "processes": len(procs),
    }


def run_quantize(shards: Path, n: int, engine: str, work: Path, extra: list[str]) -> dict:
    """`psrq quantize` on the first n items (a directory of symlinks to the first shards)."""
    from psrq.data.synth import CHUNK

    subset = work / f"items_{n}"
    subset.mkdir(parents=True, exist_ok=True)
    for c in range(-(-n // CHUNK)):
        link = subset / f"part-{c:05d}.parquet"
        if not link.exists():
            link.symlink_to((shards / f"part-{c:05d}.parquet").resolve())
    out, model = work / f"sids_{engine}_{n}", work / f"model_{engine}_{n}"
    cmd = [
        str(REPO / ".venv/bin/psrq"),
        "quantize",
        "--items",
        str(subset),
        "--engine",
        engine,
        "--out",
        str(out),
        "--model-dir",
        str(model),
        *extra,
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak: dict[str, float | int | str] = {
        "rss_mb": 0.0,
        "pss_mb": 0.0,
        "largest_mb": 0.0,
        "largest": "",
        "processes": 0,
    }

    def poll() -> None:
        while proc.poll() is None:
            now = _tree_rss(proc.pid)
            for key in ("rss_mb", "pss_mb", "processes"):
                peak[key] = max(peak[key], now[key])
            if now["largest_mb"] > peak["largest_mb"]:
                peak["largest_mb"], peak["largest"] = now["largest_mb"], now["largest"]
            time.sleep(0.2)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    output, _ = proc.communicate()
    t.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet"))
    last = [ln for ln in output.splitlines() if ln.strip()][-3:]
    return {
        "n": n,
        "engine": engine,
        "wall_s": round(wall, 1),
        "items_per_s": round(n / wall),
        "peak_tree_rss_mb": round(peak["rss_mb"]),
        "peak_tree_pss_mb": round(peak["pss_mb"]),
        "peak_single_process_pss_mb": round(peak["largest_mb"]),
        "largest_process": peak["largest"],
        "max_processes": peak["processes"],
        "rows_written": rows,
        "cli_tail": last,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shards")
    s.add_argument("--items", type=int, default=10_000_000)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--text-dim", type=int, default=64)
    s.add_argument("--audio-dim", type=int, default=48)
    q = sub.add_parser("quantize")
    q.add_argument("--shards", type=Path, required=True)
    q.add_argument("--limit", type=int, nargs="+", default=[1_000_000])
    q.add_argument("--engine", default="local")
    q.add_argument("--work", type=Path, default=None)
    q.add_argument("--json", type=Path, default=None)
    q.add_argument("extra", nargs="*", help="more psrq quantize options after --")
    args = ap.parse_args()
    if args.cmd == "shards":
        print(json.dumps(write_shards(args.items, args.out, args.text_dim, args.audio_dim)))
        return
    work = args.work or args.shards.parent / "bench"
    results = []
    for n in args.limit:
        r = run_quantize(args.shards, n, args.engine, work, args.extra)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
