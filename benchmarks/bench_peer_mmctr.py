"""The public peer's "psrq" model (hdu-yzl/MMCTR-Bench, Apache-2.0) on psrq's Last.fm-2k samples.

MMCTR-Bench's `psrq` = a PSRQ autoencoder pre-trained on item content (MLP encoder, straight-
through VQ with k-means-initialised codebooks, learned 2d -> d projections) feeding its MCCA
consumer. This script runs ITS code, unchanged, imported from a checkout of the repository, on
the same train/valid/test samples and text embeddings psrq's models use, and prints its test
metrics with psrq's metric code, next to psrq's own runs when a `psrq experiment` results.json
is given. Nothing of the peer is copied into psrq.

    git clone https://github.com/hdu-yzl/MMCTR-Bench /tmp/mmctr      (or any checkout of it)
    python benchmarks/bench_peer_mmctr.py --peer /tmp/mmctr \
        --samples runs/lastfm2k/data/samples --embeddings runs/lastfm2k/embeddings \
        --ours runs/lastfm2k/exp/results.json --out runs/lastfm2k/peer-mmctr.json

How inputs are adapted (the peer reads its own canonical data sets; Last.fm-2k is not one):
- item ID feature: psrq's ID vocabulary (items seen >= 2 times in training; rarer and unseen
  items share the OOV row 1; 0 = padding), the same one psrq's models embed;
- user ID feature: one constant (the OOV row) for every sample. psrq's models have no user
  embedding (a user is their history) and 15% of test users are new, so the peer gets none too;
- modality "text": the 384-d all-MiniLM-L6-v2 text embedding of the target and of each history
  item; padded history positions are zero and masked (`history_mask`);
- PSRQ pre-training: the peer's `fit_psrq` on the text embeddings of every catalogue item (psrq's
  quantizers also fit on every item's embedding), Adam, `--psrq-epochs` epochs;
- ranking: BCE on the peer's logits, Adam lr 1e-3, batch 512, early stopping on validation AUC
  with patience 2 and the best epoch restored (psrq's `default` preset), seeded.
Sizes (`--dim`, `--levels`, `--codebook-size`) default to psrq's experiment settings (d' = 64,
3 levels x 64); the rest of the peer's configuration is its catalogue default for `psrq`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--peer",
        type=Path,
        required=True,
        help="checkout of hdu-yzl/MMCTR-Bench (its src/ is imported)",
    )
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--embeddings", type=Path, required=True)
    p.add_argument("--modality", default="text")
    p.add_argument(
        "--ours", type=Path, help="a `psrq experiment` results.json to print beside the peer"
    )
    p.add_argument("--out", type=Path, help="write the peer's metrics here (JSON)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=64)
    p.add_argument("--psrq-epochs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def peer_configs(args: argparse.Namespace, n_ids: int, content_dim: int) -> tuple[dict, dict]:
    model_config = {
        "latent_dim": args.dim,
        "projection_dim": args.dim,
        "mlp_dims": [1024, 512, 256],  # the peer's catalogue default for psrq
        "psrq_dims": [256, 128],
        "codebook_size": args.codebook_size,
        "n_levels": args.levels,
        "dropout": 0.0,
        "batch_norm": True,
        "mu": 0.25,
        "quant_loss_weight": 1.0,
    }
    m = args.modality
    data_config = {
        "name": "lastfm2k",
        "id_feature_num": n_ids,
        "seq_len": 20,
        "use_mm_features": ["id", m],
        "use_mm_seq_features": ["id", m],
        "mm_dims": {m: content_dim},
        "mm_seq_dims": {m: content_dim},
        "user_features": ["id"],
        "user_features_dim": {},
    }
    return model_config, data_config


def make_batch(
    Batch, split, idx: torch.Tensor, item_to_id: torch.Tensor, content: torch.Tensor, modality: str
):
    target, history, label = split.target[idx], split.history[idx], split.label[idx]
    mask = history != 0
    return Batch(
        user_features={
            "id": torch.ones(len(idx), 1, dtype=torch.long)
        },  # constant: no user embedding
        item_features={"id": item_to_id[target].unsqueeze(1), modality: content[target]},
        history_features={
            "id": item_to_id[history],
            modality: content[history] * mask.unsqueeze(-1),
        },
        history_mask=mask,
        labels=label,
    )


def predict(model, Batch, split, item_to_id, content, modality, batch_size=4096) -> np.ndarray:
    model.eval()
    out = np.empty(len(split), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(split), batch_size):
            idx = torch.arange(s, min(s + batch_size, len(split)))
            out[s : s + len(idx)] = (
                model(make_batch(Batch, split, idx, item_to_id, content, modality))
                .logits.reshape(-1)
                .numpy()
            )
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(args.peer / "src"))
    from mmctr.core import Batch
    from mmctr.models.mm_models.psrq import MCCA as PeerMCCA
    from mmctr.quantization import PSRQPretrainer
    from mmctr.quantization.training import fit_psrq

    from psrq.rank.metrics import evaluate_predictions
    from psrq.rank.train import load_ranking_data

    data = load_ranking_data(args.samples, embeddings=args.embeddings, modalities=[args.modality])
    tables = data.tables
    content = torch.from_numpy(tables.content[args.modality])
    item_to_id = torch.from_numpy(tables.item_to_id)
    model_config, data_config = peer_configs(args, tables.n_ids, content.shape[1])

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    quantizer = PSRQPretrainer(model_config, data_config)
    has_content = content.norm(dim=1) > 0
    features = {args.modality: content[has_content][torch.randperm(int(has_content.sum()))]}
    psrq_loss = fit_psrq(
        quantizer,
        features,
        torch.optim.Adam(quantizer.parameters(), lr=1e-3),
        args.psrq_epochs,
        512,
        torch.device("cpu"),
    )
    quantizer.eval()
    print(
        f"peer PSRQ pre-training: {args.psrq_epochs} epochs, final loss {psrq_loss:.4f} ({time.perf_counter() - t0:.0f}s)"
    )

    model = PeerMCCA(model_config, data_config, quantizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    train, valid, test = data.splits["train"], data.splits["valid"], data.splits["test"]
    best = (-math.inf, 0, None)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
        )
        total = 0.0
        for idx in order.split(512):
            logits = model(
                make_batch(Batch, train, idx, item_to_id, content, args.modality)
            ).logits.reshape(-1)
            loss = loss_fn(logits, train.label[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        v = evaluate_predictions(
            valid.label.numpy(),
            predict(model, Batch, valid, item_to_id, content, args.modality),
            valid.user,
            valid.is_cold,
        )
        history.append({"epoch": epoch + 1, "train_loss": total / len(train), "valid": v})
        print(
            f"epoch {epoch + 1}: train loss {total / len(train):.4f}  valid AUC {v['auc']:.4f}  ({time.perf_counter() - t0:.0f}s)"
        )
        if v["auc"] > best[0]:
            best = (v["auc"], epoch + 1, copy.deepcopy(model.state_dict()))
        elif epoch + 1 - best[1] >= args.patience:
            break
    model.load_state_dict(best[2])
    metrics = {
        name: evaluate_predictions(
            s.label.numpy(),
            predict(model, Batch, s, item_to_id, content, args.modality),
            s.user,
            s.is_cold,
        )
        for name, s in (("valid", valid), ("test", test))
    }
    report = {
        "model": "MMCTR-Bench psrq (MCCA consumer)",
        "best_epoch": best[1],
        "metrics": metrics,
        "history": history,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "seconds": time.perf_counter() - t0,
    }
    rows = [("MMCTR-Bench psrq", metrics["test"])]
    if args.ours is not None:
        for run in json.loads(args.ours.read_text())["runs"]:
            t = run["summary"]["test"]
            rows.append(
                (
                    f"psrq {run['name']} (n={t['auc']['n']})",
                    {k: t[k]["mean"] for k in ("auc", "cold_auc", "logloss", "gauc")},
                )
            )
    print("\n| model (test) | All AUC | Cold AUC | Logloss | GAUC |\n|---|---|---|---|---|")
    for name, m in rows:
        print(
            f"| {name} | {m['auc']:.4f} | {m['cold_auc']:.4f} | {m['logloss']:.4f} | {m['gauc']:.4f} |"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
