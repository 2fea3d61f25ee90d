"""Data-stage benchmark: SYNTHETIC catalogue generation, sample building at scale, negative sampling.

    .venv/bin/python benchmarks/bench_data.py --items 1000000 --users 100000
    .venv/bin/python benchmarks/bench_data.py --items 10000000 --users 200000   # the 10M-item catalogue

Reports wall time per step, throughput and peak RSS (getrusage), plus the vectorised negative
sampler against a per-row Python rejection loop on the same positives in the same process.
Everything is SYNTHETIC (psrq.data.synth).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(label: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    print(f"{label:<38} {dt:8.2f} s   peak RSS {peak_rss_gib():5.2f} GiB", flush=True)
    return out, dt


def python_loop_negatives(pos_users, seen: set, popularity, rng):
    """Baseline: one positive at a time, draw until the pair was never seen."""
    cdf = np.cumsum(popularity) / popularity.sum()
    out = np.empty(len(pos_users), np.int64)
    for k, u in enumerate(pos_users.tolist()):
        while True:
            i = int(np.searchsorted(cdf, rng.random(), side="right"))
            if (u, i) not in seen:
                out[k] = i
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--per-user", type=float, default=40.0)
    ap.add_argument("--baseline-positives", type=int, default=100_000)
    ap.add_argument(
        "--keep", type=Path, default=None, help="write the catalogue here instead of a temp dir"
    )
    ap.add_argument(
        "--generate-only", action="store_true", help="time the catalogue generation only"
    )
    args = ap.parse_args()

    from psrq.data.labels import LabelRule
    from psrq.data.parquet_source import load_synth_dir
    from psrq.data.prepare import write_outputs
    from psrq.data.protocol import ProtocolConfig, build_samples, sample_negatives
    from psrq.data.synth import SynthConfig, generate

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; SYNTHETIC {args.items:,} items, {args.users:,} users"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "synth"
        cfg = SynthConfig(
            n_items=args.items, n_users=args.users, interactions_per_user=args.per_user, seed=0
        )
        summary, t_gen = timed("generate catalogue", generate, cfg, out, progress=False)
        print(f"  {summary['interactions']:,} interactions; {args.items / t_gen:,.0f} items/s")
        if args.generate_only:
            return
        data, _ = timed("load + validate (parquet)", load_synth_dir, out)
        config = ProtocolConfig()
        samples, t_s = timed("build samples (explicit labels)", build_samples, data, config)
        n = sum(t.num_rows for t in samples.tables.values())
        print(f"  {n:,} samples; {n / t_s:,.0f} samples/s")
        implicit = ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=1))
        samples_i, t_i = timed(
            "build samples (implicit, 1 negative)", build_samples, data, implicit
        )
        n_i = sum(t.num_rows for t in samples_i.tables.values())
        print(f"  {n_i:,} samples; {n_i / t_i:,.0f} samples/s")
        _, _ = timed(
            "write outputs",
            write_outputs,
            data,
            samples.tables,
            {"bench": True},
            Path(tmp) / "prepared",
        )

    # negative sampling: vectorised vs per-row Python loop, same positives, same process
    rng = np.random.default_rng(0)
    n_users, n_items, n_pos = 20_000, 200_000, args.baseline_positives
    popularity = rng.pareto(1.1, n_items) + 0.01
    users = rng.integers(0, n_users, 4 * n_pos)
    items = np.searchsorted(np.cumsum(popularity) / popularity.sum(), rng.random(4 * n_pos)).clip(
        0, n_items - 1
    )
    pos_users = users[:n_pos]
    _, t_vec = timed(
        f"negatives, vectorised ({n_pos:,} positives)",
        sample_negatives,
        pos_users,
        users,
        items,
        popularity=popularity,
        n_negatives=1,
        rng=np.random.default_rng(1),
    )
    seen = set(zip(users.tolist(), items.tolist(), strict=True))
    _, t_loop = timed(
        f"negatives, Python loop ({n_pos:,} positives)",
        python_loop_negatives,
        pos_users,
        seen,
        popularity,
        np.random.default_rng(1),
    )
    print(f"  vectorised is {t_loop / t_vec:.1f}x faster than the loop")


if __name__ == "__main__":
    main()
