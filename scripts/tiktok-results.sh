#!/bin/sh
# Regenerates docs/results-tiktok.md's numbers: TikTok micro-videos (MMSSL preprocessing), audio +
# image features, the authors' split, protocol 3, PSRQ SIDs (3 x k = 64), 5 seeds (SEEDS=N for fewer).
# Research-use data, read in place from the user's folder and never copied into the repo:
# TIKTOK=/path/to/tiktok-mmssl (default ../shared/data/tiktok-mmssl). Writes under runs/tiktok/;
# finished (run, seed) pairs are cached, so a rerun resumes; copies the per-seed records (metrics
# only) into docs/results/tiktok/ and prints the tables from them.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
TIKTOK=${TIKTOK:-../shared/data/tiktok-mmssl}
OUT=runs/tiktok
REC=docs/results/tiktok
PSRQ=${PSRQ:-.venv/bin/psrq}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-5}
$PSRQ data prepare tiktok --path "$TIKTOK" --out $OUT/data   # also writes $OUT/data/embeddings/{audio,image}.parquet
P="$PSRQ experiment --samples $OUT/data/samples --embeddings $OUT/data/embeddings --threads 1 --seeds $SEEDS --quantizers PSRQ"
( $P --out $OUT/exp-b --models "DIN,VBPR,SimTier+MAKE"
  $P --out $OUT/exp-a --models "MCCA,QARM" ) &
( $P --out $OUT/exp-a2 --models "MCCA w/o MSC"
  $P --out $OUT/exp-c --models "MCCA w/o MJC"
  $P --out $OUT/exp-b2 --models "DIN+SID" ) &
wait
for d in exp-b exp-a exp-a2 exp-c exp-b2; do mkdir -p $REC/$d && cp -r $OUT/$d/runs $REC/$d/; done
$PY scripts/results-tables.py --records $REC/exp-b $REC/exp-a $REC/exp-a2 $REC/exp-c $REC/exp-b2 -- \
  VBPR SimTier+MAKE DIN QARM "DIN+PSRQ=DIN + audio PSRQ SIDs" MCCA "MCCA w/o MSC" "MCCA w/o MJC"
