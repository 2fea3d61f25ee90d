#!/bin/sh
# Regenerates docs/results-lastfm2k.md's numbers (Last.fm-2k, text SIDs, 5 seeds): ~45 min on 2 cores.
# Writes under runs/lastfm2k-exp/; finished (model, seed) pairs are cached, so a rerun resumes.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
OUT=runs/lastfm2k-exp
PSRQ=.venv/bin/psrq
$PSRQ data prepare lastfm2k --out $OUT/data
$PSRQ embed text --items $OUT/data/items.parquet --out $OUT/embeddings/text.parquet
P="$PSRQ experiment --samples $OUT/data/samples --embeddings $OUT/embeddings --threads 1 --seeds 5"
W1='{"PSRQ": {"prefix_weight": 1.0}}'   # the paper's weight (the library default is 0.5)
( $P --out $OUT/exp --models "MCCA,MCCA w/o MSC" --quantizer-params "$W1"
  $P --out $OUT/exp-psrq-w05 --models "DIN+SID,MCCA" --quantizers PSRQ \
     --quantizer-params '{"PSRQ": {"prefix_weight": 0.5}}' ) &
$P --out $OUT/exp --models "DIN,DIN+SID,VBPR,ContentConcat" --quantizer-params "$W1" &
wait
# the full tables (every model of both halves) from the cached runs:
$P --out $OUT/exp --models "DIN,DIN+SID,VBPR,ContentConcat,MCCA,MCCA w/o MSC" --quantizer-params "$W1" --report-only
