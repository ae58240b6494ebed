#!/usr/bin/env bash
# The shipped default's GPU measurements in one self-contained call (< 9 min on an H200), jobs in
# parallel: CSP best-of-20 on the whole public test split (4,523 x 20, fast sampler, scored on
# the device); on all 1,000 val rows the fast sampler at 200 and 1,000 Euler steps and at slope 20
# (RMSE vs integration precision); 1,000 de novo samples at the trained slope and at slope 0
# (validity and Wasserstein scored here, COV and S.U.N. afterwards on the CPU from the returned
# samples); GEN_EXTRA="1 2 ..." draws 1,000 more de novo samples per seed (returned, scored on the
# CPU: the 10,000-sample COV protocol). Best of 20 samples at the checkpoint's own CSP steps
# (diffusion.csp_fast_steps where set), in at most K20_S s (default 240). Everything lands in
# /tmp/evalpar and comes back as $OUT/evalpar.tgz (at most 8 files come back from a call); each
# job has a time limit, so the tarball always comes back. From the
# repository root, carrying .whl and .devdata:
#   bash benchmarks/device/eval_parallel.sh
# (round 5's version also measured sampling throughput: benchmarks/gpu_throughput.py, same network)
set -u
D=/tmp/evalpar; mkdir -p "$D"; CK=${CK:-matgen/assets/models/default}; K20_ROWS=${K20_ROWS:-4523}
source benchmarks/device/_env.sh
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 > "$D/gpu_util.csv" 2>&1 &
V=/tmp/datasets/mp20_reduced/val.csv; T=/tmp/datasets/mp20_reduced/test.csv
python3 -c "import pandas as pd; pd.read_csv('$T').head($K20_ROWS).to_csv('/tmp/tk20.csv', index=False)"
S="python3 -m matgen sample --checkpoint $CK --no-progress --batch-size 1000"
E="python3 -m matgen evaluate"
( timeout ${K20_S:-240} $S --task csp --compositions-from /tmp/tk20.csv --num 20 --seed 1 --batch-size 4000 --out /tmp/k20.extxyz > $D/s_k20.log 2>&1 \
  && timeout 270 $E --task csp --generated /tmp/k20.extxyz --reference /tmp/tk20.csv --workers 9 --out $D/test_k20.json > $D/e_k20.log 2>&1 ) & PIDS=$!
for J in 200: 1000: 50:20; do
  ST=${J%%:*}; SL=${J##*:}; TAG=fast${ST}${SL:+_slope$SL}
  ( timeout 150 $S --task csp --compositions-from $V --num 1 --sampler fast --steps $ST ${SL:+--flow-slope $SL} --seed 1 \
      --out /tmp/v_$TAG.extxyz > $D/s_v_$TAG.log 2>&1 \
    && timeout 200 $E --task csp --generated /tmp/v_$TAG.extxyz --reference $V --workers 2 --out $D/val1000_$TAG.json > $D/e_v_$TAG.log 2>&1 ) & PIDS="$PIDS $!"
done
for SL in "" 0; do
  TAG=gen1000${SL:+_slope$SL}
  ( timeout 90 $S --num 1000 --seed 0 ${SL:+--flow-slope $SL} --out /tmp/$TAG.extxyz > $D/s_$TAG.log 2>&1 \
    && gzip -c /tmp/$TAG.extxyz > $D/$TAG.extxyz.gz \
    && timeout 300 $E --task gen --generated /tmp/$TAG.extxyz --reference $T --train /tmp/datasets/mp20_reduced/train.csv \
      --no-coverage --workers 2 --out $D/$TAG.json > $D/e_$TAG.log 2>&1 ) & PIDS="$PIDS $!"
done
for SEED in ${GEN_EXTRA:-}; do  # more de novo seeds of 1,000 for the 10,000-sample COV protocol
  ( timeout 60 $S --num 1000 --seed "$SEED" --out /tmp/gen_s$SEED.extxyz > $D/s_gen_s$SEED.log 2>&1 \
    && gzip -c /tmp/gen_s$SEED.extxyz > $D/gen1000_s$SEED.extxyz.gz )
done & PIDS="$PIDS $!"
wait $PIDS  # not a bare wait: nvidia-smi runs on
for f in $D/*.json; do echo "$(basename $f) $(grep -E '"(match_rate|rmse|valid|comp_valid|struct_valid|wdist_density|wdist_num_elements)"' $f | tr -d ' \n')"; done
[ -n "${OUT:-}" ] && tar czf "$OUT/evalpar.tgz" -C "$D" .
