#!/usr/bin/env bash
# The shipped default's GPU measurements in one short call (< 7 min on an H200), jobs in parallel
# (round 5: best-of-20 on the first 500 test rows, scored on
# the device; the fast sampler at 200 steps and at slope 5 on the whole val split; 1,000 de novo
# samples brought back for CPU scoring; sampling throughput, also size-sorted batches and groups).
# Everything lands in /tmp/evalpar and comes back as one file, $OUT/evalpar.tgz (at most 8
# files come back from a call). Run from the repository root:
#   bash benchmarks/device/eval_parallel.sh     (carry .whl and .devdata)
set -u
D=/tmp/evalpar; mkdir -p "$D"; CK=${CK:-matgen/assets/models/default}
source benchmarks/device/_env.sh
V=/tmp/datasets/mp20_reduced/val.csv
python3 -c "import pandas as pd; pd.read_csv('/tmp/datasets/mp20_reduced/test.csv').head(500).to_csv('/tmp/t500.csv', index=False)"
S="python3 -m matgen sample --checkpoint $CK --no-progress --batch-size 1000"
E="python3 -m matgen evaluate --task csp"
( timeout 100 $S --task csp --compositions-from /tmp/t500.csv --num 20 --seed 1 --batch-size 2000 --out /tmp/k20.extxyz > $D/s_k20.log 2>&1 \
  && timeout 150 $E --generated /tmp/k20.extxyz --reference /tmp/t500.csv --workers 8 --out $D/test500_k20.json > $D/e_k20.log 2>&1 ) &
( timeout 100 $S --task csp --compositions-from $V --num 1 --sampler fast --steps 200 --seed 1 --out /tmp/v200.extxyz > $D/s_v200.log 2>&1 \
  && timeout 150 $E --generated /tmp/v200.extxyz --reference $V --workers 3 --out $D/val1000_fast200.json > $D/e_v200.log 2>&1 ) &
( timeout 60 $S --task csp --compositions-from $V --num 1 --sampler fast --steps 50 --flow-slope 5 --seed 1 --out /tmp/vs5.extxyz > $D/s_vs5.log 2>&1 \
  && timeout 150 $E --generated /tmp/vs5.extxyz --reference $V --workers 3 --out $D/val1000_fast50_slope5.json > $D/e_vs5.log 2>&1 ) &
timeout 60 $S --num 1000 --seed 0 --out /tmp/gen_1000.extxyz > $D/s_gen.log 2>&1 && gzip -c /tmp/gen_1000.extxyz > $D/gen_1000.extxyz.gz
timeout 120 python3 benchmarks/gpu_throughput.py --config configs/train/mp20_dense.yaml --variants "" --checkpoint "$CK" \
  --sample-n 1024 --sample-variants fast:50,pc:1000 --out $D/throughput_sample.json > $D/tp.log 2>&1
# the same with the test compositions sorted by size into batches, dense size groups 1 and 4
timeout 300 python3 benchmarks/gpu_throughput.py --config configs/train/mp20_dense.yaml --variants "" --checkpoint "$CK" \
  --sample-n 4096 --sample-batch 2048 --sample-sort --sample-groups 1,4 --sample-variants fast:50,pc:1000 \
  --out $D/throughput_sample_sorted.json > $D/tp_sorted.log 2>&1
wait
for f in $D/*.json; do echo "$(basename $f) $(grep -E '"match_rate"|"rmse"' $f | tr -d ' \n')"; done
[ -n "${OUT:-}" ] && tar czf "$OUT/evalpar.tgz" -C "$D" .
