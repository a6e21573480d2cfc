#!/usr/bin/env bash
# The demo model's evaluation tables (README and resources/MODEL_CARD.md), on 2 CPU threads.
# Seed 0 is where the recipe was looked at; seeds 1 and 2 are held out.
set -euo pipefail
OUT=${OUT:-bench/out/eval_demo}
mkdir -p "$OUT"
for SEED in 0 1 2; do
  phs eval --dataset synthetic --seed "$SEED" --queries 300 --database 2000 --model demo --threads 2 \
    --methods cbir,crop,mask,attn-mask,fa,phs-qo,phs-qd,fa+phs,crop+phs --noise 40 --h-on-sweep 1,2,3,4,6,8 \
    --out "$OUT/seed$SEED" --json "$OUT/seed$SEED.json" --quiet
done
# The acceptance command, on a seed nobody tuned on.
phs eval --dataset synthetic --seed 5 --queries 300 --database 2000 --model demo \
  --methods cbir,phs-qo,phs-qd,fa,mask,crop --json "$OUT/acceptance_seed5.json" --out "$OUT/seed5" --quiet
