"""DDP training throughput with 1 and 2 processes (torchrun, gloo on CPU), SYNTHETIC data.

Command (what benchmarks/RESULTS.md "## Scale" records):

    .venv/bin/python benchmarks/bench_ddp.py --users 4000 --items 20000 --events 40 --epochs 2

Data: psrq.rank.synthetic (SYNTHETIC, planted clusters; text + audio SIDs, 16 codes per level);
model MCCA, d'=64, history 20, global batch 512. Each configuration is one torchrun launch; the
figure is the training samples/s of the last epoch (global samples / epoch wall time, evaluation
excluded), read from metrics.json. On this 2-core machine the fair comparison is 1 process x 2
torch threads against 2 processes x 1 thread: the same cores, split differently.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/psrq-bench-ddp"))
    ap.add_argument("--configs", nargs="+", default=["1x2", "2x1"], help="PROCESSESxTHREADS")
    args = ap.parse_args()
    from psrq.rank.synthetic import make_synthetic_ranking_data

    data = make_synthetic_ranking_data(
        args.work / "data",
        n_users=args.users,
        n_items=args.items,
        events_per_user=args.events,
        modalities=("text", "audio"),
        seed=0,
    )
    results = []
    for spec in args.configs:
        nproc, threads = (int(v) for v in spec.split("x"))
        out = args.work / f"run_{spec}"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "psrq.rank.ddp",
            "--samples",
            str(data["samples"]),
            "--sids",
            str(data["sids"]),
            "--out",
            str(out),
            "--epochs",
            str(args.epochs),
            "--patience",
            "0",
            "--batch-size",
            "512",
            "--threads",
            str(threads),
            "--quiet",
        ]
        started = time.perf_counter()
        subprocess.run(
            cmd,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            capture_output=True,
        )
        m = json.loads((out / "metrics.json").read_text())
        r = {
            "processes": nproc,
            "threads_per_process": threads,
            "samples_per_s_by_epoch": [round(h["train_samples_per_s"]) for h in m["history"]],
            "test_auc": round(m["metrics"]["test"]["auc"], 4),
            "launch_wall_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(r), flush=True)
        results.append(r)


if __name__ == "__main__":
    main()
