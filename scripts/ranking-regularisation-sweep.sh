#!/bin/sh
# The regularisation sweep behind the per-family defaults (docs/ranking.md, "Regularisation"):
# Last.fm-2k, protocol 3, text SIDs (PSRQ, 3 x k = 64), seed 0, read on VALIDATION AUC.
# One `psrq experiment` per (model, embedding L2, dropout) into $OUT/sweep/<model>-l2<x>-do<y>;
# two processes at a time on the shared 2-core machine (about 1 min per epoch there).
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
OUT=${OUT:-runs/lf}
PSRQ=.venv/bin/psrq
[ -f $OUT/data/samples/train.parquet ] || $PSRQ data prepare lastfm2k --out $OUT/data
[ -f $OUT/emb/text.parquet ] || $PSRQ embed text --items $OUT/data/items.parquet --out $OUT/emb/text.parquet
P="$PSRQ experiment --samples $OUT/data/samples --embeddings $OUT/emb --threads 1 --quantizers PSRQ --seeds ${SEEDS:-1}"
# one MODEL at L2 x DROPOUT settings given as "l2:dropout" pairs
sweep() { model=$1; shift; for s in "$@"; do
  l2=${s%:*}; do=${s#*:}
  $P --out $OUT/sweep/$(echo "$model" | tr -c 'A-Za-z0-9+\n' '_')-l2$l2-do$do --models "$model" --embedding-l2 $l2 --dropout $do
done; }
# Unregularised first, then both regularisers, then each alone (as far as time allowed: see the doc).
SETTINGS=${SETTINGS:-"0:0 0.1:0.3 1:0.3 0.1:0 0:0.3"}
( sweep DIN+SID $SETTINGS ) &
( sweep MCCA $SETTINGS ) &
wait
# The 5-seed rows of docs/ranking.md: the same command with --seeds 5 in a setting's output
# directory (seed 0 is reused), e.g. for MCCA at (0, 0):
#   SEEDS=5 SETTINGS=0:0 ... or: $P --seeds 5 --out $OUT/sweep/MCCA-l20-do0 --models MCCA --embedding-l2 0 --dropout 0
# (run for DIN+SID at (0, 0) and (0.1, 0.3), MCCA and VBPR at (0, 0); in the doc's session only
# (0, 0) and (0.1, 0.3), plus (1, 0.3) for DIN+SID, stopped, finished for the SID models.)
