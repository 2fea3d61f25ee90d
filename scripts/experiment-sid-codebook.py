"""`psrq experiment`'s DIN+SID row with the SIDs of a chosen codebook (the CLI uses the first
modality's). Usage: python scripts/experiment-sid-codebook.py SAMPLES EMBEDDINGS OUT CODEBOOK SEEDS
e.g. ... runs/tiktok/data/samples runs/tiktok/data/embeddings runs/tiktok/exp-joint joint 5
Same cache layout as `psrq experiment` (the row is named DIN+PSRQ in OUT; one codebook per OUT).
"""

import sys

from psrq.config import ExperimentConfig
from psrq.rank.experiment import run_experiment

samples, embeddings, out, codebook, seeds = sys.argv[1:6]
spec = ExperimentConfig(
    samples=samples,
    embeddings=embeddings,
    models=["DIN+SID"],
    quantizers=["PSRQ"],
    sid_modality=codebook,
    seeds=list(range(int(seeds))),
)
run_experiment(
    spec, out, threads=1, train_missing=len(sys.argv) < 7 or sys.argv[6] != "--report-only"
)
