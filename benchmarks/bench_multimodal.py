"""Multimodal semantic IDs: what the MultimodalQuantizer wrapper costs over its own quantizers.

Command (what benchmarks/RESULTS.md "## Multimodal IDs" records):

    .venv/bin/python benchmarks/bench_multimodal.py --n 100000 --codebook-size 128 --threads 2

Data are SYNTHETIC: n items with a 384-d "text" and a 200-d "audio" embedding (seeded Gaussian
blobs), 10% of the items lack audio. Two parts run in separate subprocesses so each peak RSS is
its own:

- ``baseline``: PSRQ fitted and applied directly to the three matrices the wrapper would build
  (L2-normalised text, audio, and the joint concatenation: complete items for fitting, all items
  with the missing audio block imputed for encoding): the irreducible quantizer work;
- ``multimodal``: `MultimodalQuantizer.fit_transform(..., disambiguate=True)` on the same data
  (ID alignment, normalisation, imputation, suffixes included), then save, load and `transform`
  of every item with disambiguation (what `psrq assign` does).

Also timed: `collision_stats`, `id_ranks` (the one string sort per call) and `assign_suffixes`
(per codebook) on 5M random 3-level tuples. Wall and CPU seconds are both reported: on a shared
machine CPU time is the steadier number. Ratios are only meaningful within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

TEXT_DIM, AUDIO_DIM, N_BLOBS, SEED = 384, 200, 512, 0


def synthetic_catalogue(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SYNTHETIC: (ids [n], text [n, 384], audio [n, 200], has_audio bool [n]), seeded."""
    rng = np.random.default_rng(SEED)
    labels = rng.integers(0, N_BLOBS, size=n)
    text = rng.normal(size=(N_BLOBS, TEXT_DIM)).astype(np.float32)[labels]
    text += rng.standard_normal(size=(n, TEXT_DIM), dtype=np.float32) * 0.6
    audio = rng.normal(size=(N_BLOBS, AUDIO_DIM)).astype(np.float32)[labels] * 5
    audio += rng.standard_normal(size=(n, AUDIO_DIM), dtype=np.float32) * 3
    ids = np.array([f"synthetic-{i:08d}" for i in rng.permutation(n)], dtype=object)
    return ids, text, audio, rng.random(n) >= 0.1


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_baseline(n: int, k: int) -> dict:
    from psrq import PSRQ

    _, text, audio, has = synthetic_catalogue(n)
    t0, c0 = time.perf_counter(), time.process_time()
    zt, za = _l2(text), _l2(audio[has])
    PSRQ(codebook_size=k, seed=0).fit(zt).transform(zt)
    PSRQ(codebook_size=k, seed=0).fit(za).transform(za)
    joint_fit = np.hstack([zt[has], za])
    joint_all = np.hstack([zt, np.tile(za.mean(axis=0), (n, 1))])
    joint_all[has, TEXT_DIM:] = za
    PSRQ(codebook_size=k, seed=0).fit(joint_fit).transform(joint_all)
    return {
        "part": "baseline",
        "fit_transform_s": time.perf_counter() - t0,
        "fit_transform_cpu_s": time.process_time() - c0,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_multimodal(n: int, k: int) -> dict:
    from psrq import MultimodalQuantizer
    from psrq.quantize.collisions import sid_collisions

    ids, text, audio, has = synthetic_catalogue(n)
    inputs = {"text": (ids, text), "audio": (ids[has], audio[has])}
    out: dict = {"part": "multimodal"}
    t0, c0 = time.perf_counter(), time.process_time()
    mq = MultimodalQuantizer(params={"codebook_size": k}, seed=0)
    sids = mq.fit_transform(inputs, disambiguate=True)
    out["fit_transform_s"] = time.perf_counter() - t0
    out["fit_transform_cpu_s"] = time.process_time() - c0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        mq.save(f"{d}/model")
        out["save_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = MultimodalQuantizer.load(f"{d}/model")
        out["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = loaded.transform(inputs, disambiguate=True)
        out["assign_all_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sids.write(f"{d}/sids.parquet")
        out["write_sids_s"] = time.perf_counter() - t0
    out["assign_matches_training"] = all(
        (again.codes[cb] == sids.codes[cb]).all()
        and (again.suffixes[cb] == sids.suffixes[cb]).all()
        for cb in sids.codebooks
    )
    out["unique_ratio"] = {
        cb: round(s["unique_ratio"], 4) for cb, s in sid_collisions(sids).items()
    }
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _timed(fn) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process): CPU time is the steadier number on a
    shared machine, wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_suffixes(m: int = 5_000_000) -> dict:
    from psrq.quantize.collisions import assign_suffixes, collision_stats, id_ranks

    rng = np.random.default_rng(SEED)
    codes = rng.integers(0, 128, size=(m, 3)).astype(np.int32)
    ids = np.array([f"i{i}" for i in rng.permutation(m)], dtype=object)
    out: dict = {"part": "suffixes", "items": m}
    _, out["collision_stats_s"], out["collision_stats_cpu_s"] = _timed(
        lambda: collision_stats(codes)
    )
    rank, out["id_ranks_s"], out["id_ranks_cpu_s"] = _timed(lambda: id_ranks(ids))
    _, out["assign_suffixes_s"], out["assign_suffixes_cpu_s"] = _timed(
        lambda: assign_suffixes(ids, codes, id_rank=rank)
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--codebook-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--part", choices=["baseline", "multimodal", "suffixes"], help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.part:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        run = {
            "baseline": lambda: run_baseline(args.n, args.codebook_size),
            "multimodal": lambda: run_multimodal(args.n, args.codebook_size),
            "suffixes": run_suffixes,
        }[args.part]
        print(json.dumps(run()))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    results = {}
    for part in ("baseline", "multimodal", "suffixes"):
        cmd = [
            sys.executable,
            __file__,
            "--part",
            part,
            "--n",
            str(args.n),
            "--codebook-size",
            str(args.codebook_size),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        results[part] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[part]), flush=True)
    base, mm = results["baseline"], results["multimodal"]
    input_mb = args.n * (TEXT_DIM + AUDIO_DIM) * 4 / 2**20
    print(
        f"\nn={args.n:,} (text {TEXT_DIM}-d + audio {AUDIO_DIM}-d, 10% without audio), k={args.codebook_size}, 3 levels, {args.threads} threads"
    )
    print(
        f"fit_transform wall: multimodal {mm['fit_transform_s']:.1f} s vs plain PSRQ x3 {base['fit_transform_s']:.1f} s "
        f"(ratio {mm['fit_transform_s'] / base['fit_transform_s']:.2f})"
    )
    print(
        f"fit_transform CPU:  multimodal {mm['fit_transform_cpu_s']:.1f} s vs plain PSRQ x3 {base['fit_transform_cpu_s']:.1f} s "
        f"(ratio {mm['fit_transform_cpu_s'] / base['fit_transform_cpu_s']:.2f})"
    )
    print(
        f"peak RSS: multimodal {mm['peak_rss_mb']:.0f} MB vs baseline {base['peak_rss_mb']:.0f} MB (input {input_mb:.0f} MB)"
    )
    print(
        f"save {mm['save_s']:.2f} s, load {mm['load_s']:.2f} s, assign all {mm['assign_all_s']:.1f} s "
        f"(identical to training: {mm['assign_matches_training']}), write sids {mm['write_sids_s']:.2f} s"
    )
    s = results["suffixes"]
    print(
        f"{s['items']:,} tuples (wall / CPU s): collision_stats {s['collision_stats_s']:.2f} / {s['collision_stats_cpu_s']:.2f}, "
        f"id_ranks (once per call) {s['id_ranks_s']:.2f} / {s['id_ranks_cpu_s']:.2f}, "
        f"assign_suffixes per codebook {s['assign_suffixes_s']:.2f} / {s['assign_suffixes_cpu_s']:.2f}"
    )


if __name__ == "__main__":
    main()
