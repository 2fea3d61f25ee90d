"""RQVAE vs plain RQ-KMeans (3 levels) on one embedding matrix: fit time, reconstruction, ID spread.

    .venv/bin/python benchmarks/bench_rqvae.py --npy X.npy --k 128 --epochs 50 --threads 1
    .venv/bin/python benchmarks/bench_rqvae.py --synthetic 20000 --k 128   # SYNTHETIC 384-d mixture

Both run in the same process on the same matrix (RQ-KMeans is psrq's RQKMeans).
"""

import argparse
import json
import resource
import time

import numpy as np
import torch

from psrq import RQVAE, RQKMeans


def cos(a, b):
    return float(
        np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))
    )


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def rq_kmeans(x, k, levels=3, seed=0):
    q = RQKMeans(n_levels=levels, codebook_size=k, seed=seed).fit(x)
    codes = q.transform(x)
    return codes, [cos(x, q.inverse_transform(codes, n_levels=lvl)) for lvl in range(1, levels + 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npy")
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.npy:
        x, name = np.load(a.npy).astype(np.float32), a.npy
    else:
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(200, 384)).astype(np.float32)
        x = centers[rng.integers(0, 200, a.synthetic)] + rng.normal(size=(a.synthetic, 384)).astype(
            np.float32
        )
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        name = f"SYNTHETIC mixture {a.synthetic}x384"
    (rq_codes, rq_cos), rq_w, rq_c = timed(lambda: rq_kmeans(x, a.k, seed=a.seed))
    q, w, c = timed(lambda: RQVAE(codebook_size=a.k, epochs=a.epochs, seed=a.seed).fit(x))
    codes, tw, _ = timed(lambda: q.transform(x))
    vae_cos = [cos(x, q.inverse_transform(codes, n_levels=lvl)) for lvl in (1, 2, 3)]
    out = {
        "data": name,
        "n": len(x),
        "dim": x.shape[1],
        "k": a.k,
        "epochs": a.epochs,
        "torch_threads": a.threads,
        "rqvae": {
            "fit_wall_s": round(w, 1),
            "fit_cpu_s": round(c, 1),
            "transform_wall_s": round(tw, 2),
            "recon_cos_per_level": [round(v, 4) for v in vae_cos],
            "unique_tuples": round(len(np.unique(codes, axis=0)) / len(x), 4),
            "utilisation": [round(u, 3) for u in q.utilisation_],
            "final_losses": {k: round(v, 4) for k, v in q.loss_history_[-1].items()},
        },
        "rq_kmeans": {
            "fit_wall_s": round(rq_w, 1),
            "fit_cpu_s": round(rq_c, 1),
            "recon_cos_per_level": [round(v, 4) for v in rq_cos],
            "unique_tuples": round(len(np.unique(rq_codes, axis=0)) / len(x), 4),
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mean_baseline_cos": round(cos(x, np.broadcast_to(x.mean(0), x.shape)), 4),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
