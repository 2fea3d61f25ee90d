"""MiniLM text-embedding throughput per backend (torch, ONNX Runtime fp32, ONNX Runtime int8), REAL texts.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_text_backends.py --n-texts 2000 --threads 2

Texts: the Last.fm-2k artist strings ("<name>. Tags: t1, ...", as benchmarks/bench_features.py
builds them). Every backend encodes the same texts without the cache, in rounds interleaved
backend by backend (machine load hits all alike); reported: median texts/s over the rounds, its
ratio to torch, and the min / mean cosine of each backend's vectors to torch's. The ONNX export
(and its int8 quantization) is made once under --onnx-dir and reused; its one-off cost is printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_features import lastfm_texts

from psrq.features.text import TEXT_BACKENDS, load_text_encoder


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-texts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--onnx-dir", type=Path, default=Path(".psrq-cache/onnx"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    texts = lastfm_texts(args.n_texts)
    encoders = {}
    for backend in TEXT_BACKENDS:
        t0 = time.perf_counter()
        encoders[backend] = load_text_encoder(
            None, backend=backend, batch_size=args.batch_size, onnx_dir=args.onnx_dir
        )
        print(
            f"load {backend}: {time.perf_counter() - t0:.1f} s (includes a one-off export if not cached)",
            flush=True,
        )
        encoders[backend].encode(texts[:64])  # warm-up
    speed: dict[str, list[float]] = {b: [] for b in encoders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for backend, enc in encoders.items():
            t0 = time.perf_counter()
            vectors[backend] = enc.encode(texts)
            speed[backend].append(len(texts) / (time.perf_counter() - t0))
    base = float(np.median(speed["torch"]))
    print(
        f"\n{len(texts)} Last.fm-2k texts, batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds"
    )
    print("| backend | texts/s (median) | vs torch | cosine to torch min / mean |")
    print("|---|---|---|---|")
    for backend in encoders:
        cos = (vectors[backend] * vectors["torch"]).sum(1) / (
            np.linalg.norm(vectors[backend], axis=1) * np.linalg.norm(vectors["torch"], axis=1)
        )
        med = float(np.median(speed[backend]))
        print(
            f"| {backend} | {med:,.0f} | {med / base:.2f}x | {cos.min():.4f} / {cos.mean():.4f} |"
        )


if __name__ == "__main__":
    main()
