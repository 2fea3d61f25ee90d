"""Ranking-stage speed and memory on SYNTHETIC inputs (random item tables, random histories).

    .venv/bin/python benchmarks/bench_rank.py                 # full run (threads = 2)
    .venv/bin/python benchmarks/bench_rank.py --quick         # smaller, for a smoke test
    .venv/bin/python benchmarks/bench_rank.py --skip-training # scoring latency + memory only
    .venv/bin/python benchmarks/bench_rank.py --mcca-batched  # DIN vs MCCA, batched poolings before/after

Measures, in one process so the ratios compare like with like:
- training throughput (samples/s) of DIN and MCCA at d'=64, history 20, batch 512
  (MCCA with text-only codebooks = 3 poolings, and text+audio = 4 poolings);
- latency of scoring 1,000 candidates for one user with a trained model (`Ranker.score`);
- memory of an encoded 1M-sample split (tensors) and peak RSS.
Results go to benchmarks/RESULTS.md "## Ranking" by hand, with the machine's load noted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time

import numpy as np
import torch

from psrq.rank.batches import EncodedSplit, ItemTables, iter_batches
from psrq.rank.train import TrainConfig, make_model, make_optimizer
from psrq.serve.ranker import Ranker


def synthetic_tables(
    n_items: int, modalities: tuple[str, ...], k: int = 128, seed: int = 0
) -> ItemTables:
    """SYNTHETIC item tables: every item has its own ID row and random 3-level SIDs."""
    rng = np.random.default_rng(seed)
    ids = np.array(["<pad>", "<oov>", *[f"syn_{i}" for i in range(n_items)]], dtype=object)
    item_to_id = np.arange(n_items + 2, dtype=np.int64)
    sids = {
        cb: np.vstack([np.zeros((2, 3), np.int64), rng.integers(1, k + 1, size=(n_items, 3))])
        for cb in (*modalities, "joint")
    }
    return ItemTables(
        item_ids=ids,
        item_to_id=item_to_id,
        n_ids=n_items + 2,
        sids=sids,
        sid_sizes={cb: [k] * 3 for cb in sids},
    )


def synthetic_split(n: int, n_items: int, max_history: int = 20, seed: int = 0) -> EncodedSplit:
    """SYNTHETIC samples: random targets, histories of random length 0..max_history."""
    rng = np.random.default_rng(seed)
    hist = rng.integers(2, n_items + 2, size=(n, max_history))
    lens = rng.integers(0, max_history + 1, size=n)
    hist[np.arange(max_history)[None, :] >= lens[:, None]] = 0
    return EncodedSplit(
        name="synthetic",
        target=torch.from_numpy(rng.integers(2, n_items + 2, size=n)),
        history=torch.from_numpy(hist),
        label=torch.from_numpy(rng.integers(0, 2, size=n).astype(np.float32)),
        user=np.arange(n),
        is_cold=None,
    )


def train_throughput(
    config: TrainConfig, tables: ItemTables, split: EncodedSplit, n_batches: int
) -> float:
    model = make_model(config, tables)
    opt = make_optimizer(model, config)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(0)
    batches = iter_batches(split, config.batch_size, generator=gen)
    for _ in range(3):  # warm-up
        _, _, t, h, y = next(batches)
        opt.zero_grad()
        loss_fn(model(t, h), y).backward()
        opt.step()
    start, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        _, _, t, h, y = next(batches)
        loss = loss_fn(model(t, h), y)
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


class _Trainer:
    """One model + optimiser + batch stream, stepped in timed rounds (so several models interleave)."""

    def __init__(
        self,
        config: TrainConfig,
        tables: ItemTables,
        split: EncodedSplit,
        batched: bool = True,
        packed_din: bool = False,
    ) -> None:
        from psrq.rank.layers import pool_stacked
        from psrq.rank.models import MCCA

        torch.manual_seed(0)
        self.model, self.batched, self.mcca = make_model(config, tables), batched, MCCA
        if (
            packed_din
        ):  # fairness row: DIN's one pooling through the same packed `pool_stacked` (C = 1)
            pool = self.model.pooling
            pool.forward = lambda k, q, m: pool_stacked([pool], k.unsqueeze(0), q.unsqueeze(0), m)[
                0
            ]
        self.opt = make_optimizer(self.model, config)
        self.loss_fn = torch.nn.BCEWithLogitsLoss()
        self.split, self.batch_size = split, config.batch_size
        self.batches = iter_batches(
            split, config.batch_size, generator=torch.Generator().manual_seed(0)
        )
        self.steps(3)  # warm-up

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter_batches(
                self.split, self.batch_size, generator=torch.Generator().manual_seed(1)
            )
            return next(self.batches)

    def steps(self, n: int) -> float:
        """Run n forward+backward+optimiser steps; samples/s."""
        saved = self.mcca.batched_poolings
        self.mcca.batched_poolings = self.batched
        try:
            start, seen = time.perf_counter(), 0
            for _ in range(n):
                _, _, t, h, y = self._next()
                loss = self.loss_fn(self.model(t, h), y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                seen += len(y)
            return seen / (time.perf_counter() - start)
        finally:
            self.mcca.batched_poolings = saved


def mcca_batched_comparison(
    n_batches: int, repeats: int, n_items: int = 100_000
) -> dict[str, object]:
    """Issue 12 "MCCA at DIN cost": DIN and MCCA (text, text+audio) with the batched poolings
    ("after") and one call per pooling module ("before", same weights), interleaved round by
    round; per model the median samples/s over the rounds and the time ratios to DIN."""
    split = synthetic_split(512 * (n_batches + 5), n_items)
    text = synthetic_tables(n_items, ("text",))
    both = synthetic_tables(n_items, ("text", "audio"))
    # With one modality the joint SID is the modality's SID (aliased: one table, one pooling).
    text.sids["joint"] = text.sids["text"].copy()
    runs = {
        "DIN": _Trainer(TrainConfig(model="DIN"), text, split),
        "DIN (packed pooling)": _Trainer(TrainConfig(model="DIN"), text, split, packed_din=True),
        "MCCA (text) before": _Trainer(TrainConfig(model="MCCA"), text, split, batched=False),
        "MCCA (text) after": _Trainer(TrainConfig(model="MCCA"), text, split),
        "MCCA (text+audio) before": _Trainer(TrainConfig(model="MCCA"), both, split, batched=False),
        "MCCA (text+audio) after": _Trainer(TrainConfig(model="MCCA"), both, split),
    }
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(repeats):
        for name, trainer in runs.items():
            rates[name].append(trainer.steps(n_batches))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {
        "describe": {k: t.model.describe() for k, t in runs.items()},
        "samples_per_s_median": med,
        "samples_per_s_all": rates,
        "time_ratio_to_DIN": {k: med["DIN"] / v for k, v in med.items() if k != "DIN"},
    }


def _old_unit_forward(self, keys, query):
    """ActivationUnit.forward before the shared-history fusion (the baseline of the scoring target)."""
    h = self.key_proj(keys) + self.query_proj(query).unsqueeze(1)
    if self.product_proj is not None:
        h = h + self.product_proj(keys * query.unsqueeze(1))
    return self.rest(h).squeeze(-1)


def _old_pooling_forward(self, keys, query, mask):
    """TargetAttentionPooling.forward before padding was dropped for a shared history."""
    weights = self.unit(keys, query) * mask.to(keys.dtype)
    return torch.matmul(weights.unsqueeze(1), keys).squeeze(1)


@contextlib.contextmanager
def old_scoring_layers():
    from psrq.rank import layers
    from psrq.rank.models import MCCA

    saved = (
        layers.ActivationUnit.forward,
        layers.TargetAttentionPooling.forward,
        MCCA.batched_poolings,
    )
    layers.ActivationUnit.forward, layers.TargetAttentionPooling.forward = (
        _old_unit_forward,
        _old_pooling_forward,
    )
    MCCA.batched_poolings = False  # the per-pooling modules (which the patched forwards replace)
    try:
        yield
    finally:
        (
            layers.ActivationUnit.forward,
            layers.TargetAttentionPooling.forward,
            MCCA.batched_poolings,
        ) = saved


def scoring_latency(
    tables: ItemTables, n_candidates: int = 1000, repeats: int = 50
) -> dict[str, float]:
    """Median / p90 of Ranker.score for one user, and of the pre-fusion layers in the same loop.

    The two are interleaved call by call so machine load hits both alike; CPU ms (process time,
    all threads) are reported too, being far less sensitive to other jobs than wall time.
    """
    model = make_model(TrainConfig(model="MCCA"), tables)
    ranker = Ranker(model, tables, {"train_config": {"max_history": 20}})
    rng = np.random.default_rng(1)
    history = [str(x) for x in tables.item_ids[rng.integers(2, tables.n_items, 20)]]
    candidates = [str(x) for x in tables.item_ids[rng.integers(2, tables.n_items, n_candidates)]]
    ranker.score(history, candidates)
    times: dict[str, list[float]] = {"new": [], "old": []}
    cpu: dict[str, list[float]] = {"new": [], "old": []}
    for _ in range(repeats):
        for which in ("new", "old"):
            guard = old_scoring_layers() if which == "old" else contextlib.nullcontext()
            with guard:
                c0, t0 = time.process_time(), time.perf_counter()
                ranker.score(history, candidates)
                times[which].append(time.perf_counter() - t0)
                cpu[which].append(time.process_time() - c0)
    out = {}
    for which in ("new", "old"):
        prefix = "" if which == "new" else "before_"
        out[prefix + "median_ms"] = 1e3 * float(np.median(times[which]))
        out[prefix + "p90_ms"] = 1e3 * float(np.percentile(times[which], 90))
        out[prefix + "min_ms"] = 1e3 * float(np.min(times[which]))
        out[prefix + "median_cpu_ms"] = 1e3 * float(np.median(cpu[which]))
    out["speedup_median"] = out["before_median_ms"] / out["median_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-training", action="store_true", help="only scoring latency and memory")
    ap.add_argument(
        "--mcca-batched",
        action="store_true",
        help="only DIN vs MCCA before/after batched poolings (issue 12)",
    )
    ap.add_argument("--repeats", type=int, default=5, help="rounds of --mcca-batched")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mcca_batched:
        out = mcca_batched_comparison(10 if args.quick else 20, args.repeats)
        print(json.dumps({"threads": args.threads, **out}, indent=2))
        return
    n_items = 100_000
    n_batches = 10 if args.quick else 40
    split = synthetic_split(512 * (n_batches + 5), n_items)
    results: dict[str, object] = {
        "threads": args.threads,
        "n_items": n_items,
        "batch_size": 512,
        "dim": 64,
        "history": 20,
    }
    text = synthetic_tables(n_items, ("text",))
    both = synthetic_tables(n_items, ("text", "audio"))
    runs = {
        "DIN": (TrainConfig(model="DIN"), text),
        "DIN+text SIDs": (TrainConfig(model="DIN", model_params={"sid_codebook": "text"}), text),
        "MCCA (text)": (TrainConfig(model="MCCA"), text),
        "MCCA (text+audio)": (TrainConfig(model="MCCA"), both),
    }
    tput = {}
    for name, (cfg, tabs) in ({} if args.skip_training else runs).items():
        tput[name] = train_throughput(cfg, tabs, split, n_batches)
        print(f"{name:20s} {tput[name]:10.0f} samples/s", flush=True)
    if tput:
        results["train_samples_per_s"] = tput
        results["mcca_text_over_din_time_ratio"] = tput["DIN"] / tput["MCCA (text)"]
        results["mcca_text_audio_over_din_time_ratio"] = tput["DIN"] / tput["MCCA (text+audio)"]
    results["score_1000_candidates"] = scoring_latency(both)
    print("scoring 1000 candidates:", results["score_1000_candidates"], flush=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = synthetic_split(1_000_000, n_items, seed=2)
    tensor_bytes = (
        sum(t.element_size() * t.nelement() for t in (big.target, big.history, big.label))
        + big.user.nbytes
    )
    results["split_1M_tensor_MB"] = tensor_bytes / 2**20
    results["peak_rss_MB"] = max(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
