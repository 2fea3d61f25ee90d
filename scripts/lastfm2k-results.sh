#!/bin/sh
# Regenerates docs/results-lastfm2k.md's numbers: Last.fm-2k, protocol 3, text PSRQ SIDs
# (3 x k = 64, prefix weight 0.5, the library defaults), regularisation defaults per model family,
# 5 seeds (SEEDS=N for fewer). Writes under runs/lf/; finished (run, seed) pairs are cached, so a
# rerun resumes (the cache key holds the samples path as given: keep these relative paths).
# Two processes at a time; about 2-5 min per DIN-type run and 5-12 min per MCCA run on the shared
# 2-core machine.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=${PYTHONPATH:-src}
OUT=runs/lf
PSRQ=${PSRQ:-.venv/bin/psrq}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-5}
$PSRQ data prepare lastfm2k --out $OUT/data
[ -f $OUT/emb/text.parquet ] || $PSRQ embed text --items $OUT/data/items.parquet --out $OUT/emb/text.parquet
P="$PSRQ experiment --samples $OUT/data/samples --embeddings $OUT/emb --threads 1 --seeds $SEEDS"
# Text is the only modality: MCCA builds one codebook, so "MCCA w/o MSC" and "MCCA w/o MJC" are
# the same network as MCCA and are not run.
( $P --out $OUT/exp --models "VBPR,DIN,DIN+SID,MCCA,ContentConcat" --quantizers PSRQ
  $P --out $OUT/exp --models "DIN+SID" --quantizers VQ,PQ,RQKMeans,RQVAE ) &
( $P --out $OUT/exp-b --models "SimTier+MAKE,QARM"
  $P --out $OUT/exp-b --models "DIN+SID+dot,MCCA+dot,MCCA+content" --quantizers PSRQ
  $P --out $OUT/exp-reg --models DIN+SID --quantizers PSRQ --embedding-l2 0.1 --dropout 0.3 ) &
wait
# the tables (from the cached runs; trains nothing):
$P --out $OUT/exp --models "VBPR,DIN,DIN+SID,MCCA,ContentConcat" --quantizers VQ,PQ,RQKMeans,RQVAE,PSRQ --report-only
$P --out $OUT/exp-b --models "SimTier+MAKE,QARM,DIN+SID+dot,MCCA+dot,MCCA+content" --quantizers PSRQ --report-only
$P --out $OUT/exp-reg --models DIN+SID --quantizers PSRQ --embedding-l2 0.1 --dropout 0.3 --report-only
$PY scripts/results-tables.py $OUT/exp $OUT/exp-b -- VBPR SimTier+MAKE ContentConcat DIN QARM DIN+PSRQ MCCA
$PY scripts/results-tables.py $OUT/exp -- DIN DIN+VQ DIN+PQ DIN+RQ DIN+RQ-VAE DIN+PSRQ
$PY scripts/results-tables.py $OUT/exp-reg -- "DIN+PSRQ=DIN+PSRQ (L2 0.1, dropout 0.3)"
$PY scripts/results-tables.py $OUT/exp $OUT/exp-b -- DIN+PSRQ DIN+PSRQ+dot MCCA MCCA+dot MCCA+content VBPR
