"""Training samples/s in fp32 and bf16 autocast (CPU), SYNTHETIC data, one process.

Command (what benchmarks/RESULTS.md "## Mixed precision" records):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_precision.py --users 1000 --items 5000 --events 40 --rounds 3

MCCA, d'=64, history 20, batch 512, 1 torch thread. fp32 and bf16 epochs alternate in the same
process (rounds x one epoch each), so load on a shared machine hits both alike; the figure is
the ratio of the median epoch times, and the load average is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/psrq-bench-precision"))
    args = ap.parse_args()
    import torch

    from psrq.rank.synthetic import make_synthetic_ranking_data
    from psrq.rank.train import (
        TrainConfig,
        load_ranking_data,
        make_model,
        make_optimizer,
        train_one_epoch,
    )

    torch.set_num_threads(args.threads)
    paths = make_synthetic_ranking_data(
        args.work / "data",
        n_users=args.users,
        n_items=args.items,
        events_per_user=args.events,
        modalities=("text", "audio"),
        seed=0,
    )
    data = load_ranking_data(paths["samples"], sids=paths["sids"])
    train = data.splits["train"]
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    runs = {}
    for precision in seconds:
        config = TrainConfig(model="MCCA", batch_size=512, precision=precision)
        model = make_model(config, data.tables)
        runs[precision] = (model, make_optimizer(model, config), config)
    for r in range(args.rounds):
        for precision, (model, optimizer, config) in runs.items():
            started = time.perf_counter()
            train_one_epoch(model, optimizer, train, config, r, progress=False)
            seconds[precision].append(time.perf_counter() - started)
    rate = {p: len(train) / statistics.median(s) for p, s in seconds.items()}
    print(f"train samples: {len(train):,}; load average {os.getloadavg()}")
    for p, s in seconds.items():
        print(f"{p}: epochs {[round(x, 2) for x in s]} s, median {rate[p]:,.0f} samples/s")
    print(f"bf16 / fp32 samples/s: {rate['bf16'] / rate['fp32']:.2f}")


if __name__ == "__main__":
    main()
