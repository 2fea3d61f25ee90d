#!/bin/sh
# Regenerates docs/results-tiktok.md's numbers: TikTok micro-videos (MMSSL preprocessing), audio +
# image features, the authors' split, protocol 3, PSRQ SIDs (3 x k = 64), 5 seeds (SEEDS=N for fewer).
# Research-use data, read in place from the user's folder and never copied into the repo:
# TIKTOK=/path/to/tiktok-mmssl (default ../shared/data/tiktok-mmssl).
# Writes under runs/tiktok/; finished (run, seed) pairs are cached, so a rerun resumes.
# Two processes at a time (one output dir each: `psrq experiment` locks its --out);
# about 2-5 min per DIN-type run and 10-20 min per MCCA run on the shared 2-core machine.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH=${PYTHONPATH:-src}
TIKTOK=${TIKTOK:-../shared/data/tiktok-mmssl}
OUT=runs/tiktok
PSRQ=${PSRQ:-.venv/bin/psrq}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-5}
$PSRQ data prepare tiktok --path "$TIKTOK" --out $OUT/data   # also writes $OUT/data/embeddings/{audio,image}.parquet
P="$PSRQ experiment --samples $OUT/data/samples --embeddings $OUT/data/embeddings --threads 1 --seeds $SEEDS --quantizers PSRQ"
A="MCCA,MCCA w/o MSC,QARM"
B="DIN,DIN+SID,VBPR,SimTier+MAKE"     # DIN+SID = DIN + the first modality's (audio) PSRQ SIDs
( $P --out $OUT/exp-a --models "$A" ) &
( $P --out $OUT/exp-b --models "$B"
  $P --out $OUT/exp-c --models "MCCA w/o MJC"
  $PY scripts/experiment-sid-codebook.py $OUT/data/samples $OUT/data/embeddings $OUT/exp-joint joint $SEEDS  # DIN + joint SIDs
  # for the record: DIN + audio SIDs with the former DIN+SID default regularisation
  $P --out $OUT/exp-reg --models DIN+SID --embedding-l2 0.1 --dropout 0.3 ) &
wait
# the tables of docs/results-tiktok.md (from the cached runs; trains nothing):
$P --out $OUT/exp-a --models "$A" --report-only
$P --out $OUT/exp-b --models "$B" --report-only
$P --out $OUT/exp-c --models "MCCA w/o MJC" --report-only
$PY scripts/experiment-sid-codebook.py $OUT/data/samples $OUT/data/embeddings $OUT/exp-joint joint $SEEDS --report-only
$P --out $OUT/exp-reg --models DIN+SID --embedding-l2 0.1 --dropout 0.3 --report-only
$PY scripts/results-tables.py $OUT/exp-b $OUT/exp-a $OUT/exp-c -- \
  VBPR SimTier+MAKE DIN QARM "DIN+PSRQ=DIN + audio PSRQ SIDs" MCCA "MCCA w/o MSC" "MCCA w/o MJC"
$PY scripts/results-tables.py $OUT/exp-joint -- "DIN+PSRQ=DIN + joint PSRQ SIDs"
$PY scripts/results-tables.py $OUT/exp-reg -- "DIN+PSRQ=DIN + audio PSRQ SIDs (0.1, 0.3)"
