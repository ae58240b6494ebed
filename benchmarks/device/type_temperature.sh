#!/usr/bin/env bash
# De novo type temperature (diffusion.type_temperature) on the shipped default, in one short call:
# 1,000 samples, seed 0, fast 50 steps on the GPU (the README's de novo protocol) at each T in
# $TS, then `matgen evaluate --task gen --no-coverage` against mp20_reduced val and the public test
# split (the image lacks matminer: COV is scored on the CPU from the returned samples), four jobs of
# four workers, stopped at $DEADLINE s after the start so the samples always come back
# ($OUT/typetemp.tgz). Ran 2026-12-04 in 47 s (the evaluations, then without --no-coverage, failed).
# From the repository root, carrying .whl and .devdata:
#   DEADLINE=290 bash benchmarks/device/type_temperature.sh
set -u
START=$(date +%s); D=/tmp/tt; mkdir -p "$D"; TS=${TS:-"1.0 0.7"}; DEADLINE=${DEADLINE:-290}
source benchmarks/device/_env.sh
for t in $TS; do
  python3 -m matgen sample --num 1000 --seed 0 --batch-size 1000 --type-temperature "$t" \
    --no-progress --out "$D/gen_T$t.extxyz" > "$D/s_T$t.log" 2>&1
done
left=$((DEADLINE - ($(date +%s) - START)))
for t in $TS; do for R in val test; do
  timeout "$left" python3 -m matgen evaluate --task gen --generated "$D/gen_T$t.extxyz" \
    --reference "$MATGEN_DATA_DIR/mp20_reduced/$R.csv" --no-coverage --workers 4 \
    --out "$D/${R}_T$t.json" \
    --per-structure "$D/${R}_T$t.csv" > "$D/e_${R}_T$t.log" 2>&1 &
done; done
wait
echo "sampled + evaluated in $(($(date +%s) - START)) s"; ls "$D"
tar czf "${OUT:-/tmp}/typetemp.tgz" -C /tmp tt
