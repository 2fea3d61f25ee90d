#!/bin/sh
# Regenerates docs/results-synthetic.md's numbers (SYNTHETIC text + audio catalogue, 3 seeds): ~20 min on 2 cores.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
PSRQ=.venv/bin/psrq
$PSRQ data synth --n-items 10000 --n-users 1000 --out runs/synth/catalogue --seed 0
$PSRQ data prepare synth runs/synth/catalogue --out runs/synth/data
$PSRQ experiment --samples runs/synth/data/samples --embeddings runs/synth/catalogue/embeddings \
  --out runs/synth/exp --models "DIN,DIN+SID,ContentConcat,MCCA,MCCA w/o MSC,MCCA w/o MJC" --quantizers PSRQ \
  --quantizer-params '{"PSRQ": {"prefix_weight": 1.0}}' \
  --seeds 3 --threads 1
