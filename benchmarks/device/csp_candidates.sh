#!/usr/bin/env bash
# K CSP candidates per composition from the shipped default (fast 50 steps, seed $SEED) for all
# 1,000 mp20_reduced val rows and the whole public test split, sampled on the GPU and brought back
# gzipped in parts of at most 15 MB ($OUT/cand.tgz.part-*: `cat cand.tgz.part-* | tar xz`), for
# choosing one structure per composition on the CPU (benchmarks/csp_select.py). From the
# repository root, carrying .whl and .devdata/datasets:   K=20 SEED=1 bash benchmarks/device/csp_candidates.sh
set -u
START=$(date +%s); D=/tmp/cand; mkdir -p "$D"; K=${K:-20}; SEED=${SEED:-1}
CK=${CK:-matgen/assets/models/default}
source benchmarks/device/_env.sh
for R in val test; do
  timeout 300 python3 -m matgen sample --checkpoint "$CK" --task csp --num "$K" --sampler fast \
    --steps 50 --seed "$SEED" --batch-size 4000 --no-progress \
    --compositions-from "/tmp/datasets/mp20_reduced/$R.csv" --out "$D/${R}_k${K}_s$SEED.extxyz" \
    > "$D/sample_$R.log" 2>&1; tail -2 "$D/sample_$R.log"
done
echo "sampled in $(($(date +%s) - START)) s"; ls -la "$D"
tar czf /tmp/cand.tgz -C /tmp cand && split -b 15000000 -d /tmp/cand.tgz "${OUT:-/tmp}/cand.tgz.part-"
ls -la "${OUT:-/tmp}"
