"""Quantizer speed and memory: PSRQ vs RQKMeans vs faiss's ResidualQuantizer, on SYNTHETIC data.

Command (what benchmarks/RESULTS.md "## Quantizers" records):

    .venv/bin/python benchmarks/bench_quantize.py --sizes 100000 1000000 --threads 2

Each (method, n) runs in its own subprocess, so its peak RSS (ru_maxrss) is its own. The data are
SYNTHETIC: n x 384 float32 vectors, a seeded mixture of 1,024 Gaussian blobs, L2-normalised (the
shape of sentence-embedding catalogues). Every method encodes 3 levels x 256 codes and trains on
the same seeded sample of 256 * 256 = 65,536 rows (psrq's default max_points_per_centroid=256),
so fit cost is flat in n and encode cost grows with n.

Reported per run: fit seconds, encode seconds and items/s (transform of all n rows), fit+encode
seconds, peak RSS and its ratio to the input matrix (n * 384 * 4 bytes). Ratios between methods
are only meaningful within one run of this script (the machine may be shared and noisy).
`--faiss-rq-max-n` skips faiss's beam-search ResidualQuantizer above that size (it is slow).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DIM = 384
LEVELS = 3
CODES = 256
N_BLOBS = 1024
SEED = 0


def synthetic_embeddings(
    n: int, dim: int = DIM, seed: int = SEED, chunk: int = 20_000
) -> np.ndarray:
    """SYNTHETIC float32 [n, dim]: seeded Gaussian blobs, rows L2-normalised (built in chunks)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_BLOBS, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        block = centers[rng.integers(0, N_BLOBS, size=m)]
        block += rng.standard_normal(size=(m, dim), dtype=np.float32) * 0.6
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


CPU_MARKS: dict[str, float] = {}


def run_psrq_family(method: str, x: np.ndarray) -> tuple[float, float, np.ndarray]:
    from psrq import PSRQ, RQKMeans

    q = (
        RQKMeans(n_levels=LEVELS, codebook_size=CODES, seed=SEED)
        if method == "RQKMeans"
        else PSRQ(n_levels=LEVELS, codebook_size=CODES, seed=SEED, prefix_weight=1.0)
    )
    c0, t0 = _cpu_s(), time.perf_counter()
    q.fit(x)
    c1, t1 = _cpu_s(), time.perf_counter()
    codes = q.transform(x)
    c2, t2 = _cpu_s(), time.perf_counter()
    CPU_MARKS.update(fit_cpu_s=c1 - c0, encode_cpu_s=c2 - c1)
    return t1 - t0, t2 - t1, codes


def run_faiss_rq(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    import faiss

    from psrq.quantize.inputs import ArraySource

    rq = faiss.ResidualQuantizer(x.shape[1], LEVELS, int(np.log2(CODES)))
    c0, t0 = _cpu_s(), time.perf_counter()
    sample = ArraySource(x).sample(CODES * 256, SEED)  # the same seeded sample psrq trains on
    rq.train(sample)
    c1, t1 = _cpu_s(), time.perf_counter()
    codes = np.empty((x.shape[0], rq.code_size), dtype=np.uint8)
    for start in range(0, x.shape[0], 65_536):
        codes[start : start + 65_536] = rq.compute_codes(
            np.ascontiguousarray(x[start : start + 65_536])
        )
    c2, t2 = _cpu_s(), time.perf_counter()
    CPU_MARKS.update(fit_cpu_s=c1 - c0, encode_cpu_s=c2 - c1)
    return t1 - t0, t2 - t1, codes


def worker(method: str, n: int, threads: int) -> dict[str, object]:
    import faiss

    faiss.omp_set_num_threads(threads)
    x = synthetic_embeddings(n)
    rss_data = _rss_mb()
    if method == "faiss.ResidualQuantizer":
        fit_s, enc_s, _ = run_faiss_rq(x)
        extra = {"beam": int(faiss.ResidualQuantizer(DIM, LEVELS, 8).max_beam_size)}
    else:
        fit_s, enc_s, _ = run_psrq_family(method, x)
        extra = {}
    input_mb = x.nbytes / 2**20
    peak = _peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "method": method,
        "n": n,
        "fit_s": round(fit_s, 2),
        "encode_s": round(enc_s, 2),
        "encode_items_per_s": round(n / enc_s),
        "total_s": round(fit_s + enc_s, 2),
        # CPU seconds of the whole worker (data generation included): wall >> cpu means the
        # cores were busy with other work while this ran.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "fit_cpu_s": round(CPU_MARKS["fit_cpu_s"], 1),
        "encode_cpu_s": round(CPU_MARKS["encode_cpu_s"], 1),
        "input_mb": round(input_mb),
        "rss_after_data_mb": round(rss_data),
        "peak_rss_mb": round(peak),
        "peak_over_input": round(peak / input_mb, 2),
        **extra,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--methods", nargs="+", default=["RQKMeans", "PSRQ", "faiss.ResidualQuantizer"])
    ap.add_argument("--threads", type=int, default=2, help="faiss/OpenMP threads per run")
    ap.add_argument("--faiss-rq-max-n", type=int, default=1_000_000)
    ap.add_argument("--json-out", default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--table-from", default=None, help="print the table of a --json-out file and exit"
    )
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.table_from:
        with open(args.table_from) as f:
            print_table(json.load(f))
        return
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.threads)))
        return

    rows = []
    # Same threads and OpenMP wait policy for every method (psrq sets PASSIVE itself; see
    # psrq.quantize.kmeans.import_faiss), so faiss's ResidualQuantizer is not handicapped.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "OPENBLAS_NUM_THREADS": str(args.threads),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }
    for n in args.sizes:
        for method in args.methods:
            if method == "faiss.ResidualQuantizer" and n > args.faiss_rq_max_n:
                print(
                    f"skip {method} n={n} (--faiss-rq-max-n {args.faiss_rq_max_n})", file=sys.stderr
                )
                continue
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                method,
                str(n),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print_table(rows)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)


def print_table(rows: list[dict[str, object]]) -> None:
    """Markdown table; "vs RQKMeans" compares with the latest RQKMeans row of the same n above it
    (runs repeated with `--methods RQKMeans PSRQ RQKMeans PSRQ` pair up), in wall and CPU time."""
    print(
        "| n | method | fit s (CPU s) | encode s (CPU s) | encode items/s | fit+encode s | vs RQKMeans wall / CPU "
        "| peak RSS MB | peak / input |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    base: dict[object, dict[str, object]] = {}
    for r in rows:
        if r["method"] == "RQKMeans":
            base[r["n"]] = r
        ratio = "-"
        b = base.get(r["n"])
        if b is not None:
            ratio = f"{r['total_s'] / b['total_s']:.2f}x"
            if "fit_cpu_s" in r and "fit_cpu_s" in b:
                cpu = (r["fit_cpu_s"] + r["encode_cpu_s"]) / (b["fit_cpu_s"] + b["encode_cpu_s"])
                ratio += f" / {cpu:.2f}x"
        name = r["method"] + (f" (beam {r['beam']})" if "beam" in r else "")
        fit_cpu = f" ({r['fit_cpu_s']})" if "fit_cpu_s" in r else ""
        enc_cpu = f" ({r['encode_cpu_s']})" if "encode_cpu_s" in r else ""
        print(
            f"| {r['n']:,} | {name} | {r['fit_s']}{fit_cpu} | {r['encode_s']}{enc_cpu} | "
            f"{r['encode_items_per_s']:,} | {r['total_s']} | {ratio} | {r['peak_rss_mb']:,} | {r['peak_over_input']} |"
        )


if __name__ == "__main__":
    main()
