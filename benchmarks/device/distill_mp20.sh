#!/usr/bin/env bash
# Issue #11 on the lent GPU, one device call (< 10 min): consistency-distil the shipped default
# model (configs/train/distill_mp20.yaml) for DISTILL_MIN minutes, then sample with the student
# and the teacher on the first CSP_ROWS mp20_reduced test rows and 1,000 de novo, and time
# the samplers at batch 1024. Needs, carried: .whl (WHL=...) and .devdata. Writes into
# ${OUT:-/tmp/distillout}: student weights (split in 15 MB parts), metrics.csv, train log,
# extxyz files, throughput JSON. Metrics are computed afterwards with `matgen evaluate` on CPU.
# QUICK=1 skips everything after the student's CSP samples; TEACHER_ODE=1 adds the teacher's
# fast (ODE/DDIM) sampler at 20 and 50 steps on the same rows.
set -u
O=${OUT:-/tmp/distillout}; mkdir -p "$O"
W=/tmp/distill; mkdir -p "$W"
DISTILL_MIN=${DISTILL_MIN:-6}; CSP_ROWS=${CSP_ROWS:-500}
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$O/driver.log"; }
source benchmarks/device/_env.sh
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1)"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$O/gpu_util.csv" 2>&1 &
CK="$W/run/checkpoints/last"
if [ -z "${SKIP_TRAIN:-}" ]; then  # SKIP_TRAIN=1: only the measurements (a warm machine)
  # CONFIG / INIT: continue from an earlier student (INIT=its folder) with another config
  python3 -m matgen train --config "${CONFIG:-configs/train/distill_mp20.yaml}" --out "$W/run" \
    --max-time "$DISTILL_MIN" --no-progress ${RESUME:+--resume} ${INIT:+--init "$INIT"} > "$O/train.log" 2>&1
  log "distill exit $? $(tail -c 300 $O/train.log | tr '\n' ' ')"
  cp "$W/run/metrics.csv" "$O/metrics.csv"; cp "$CK/model.json" "$O/model.json"
  split -b 15M "$CK/model.safetensors" "$O/model.safetensors.part-"
fi
python3 -c "import pandas as pd; pd.read_csv('/tmp/datasets/mp20_reduced/test.csv').head($CSP_ROWS).to_csv('/tmp/test_rows.csv', index=False)"
if [ -n "${TEACHER_ODE:-}" ]; then  # the teacher's deterministic ODE/DDIM sampler, which CD distils
  for s in 20 50; do
    timeout 60 python3 -m matgen sample --sampler fast --steps $s --task csp --compositions-from /tmp/test_rows.csv \
      --batch-size 1024 --seed 0 --no-progress --out "$O/teacher_csp${CSP_ROWS}_fast$s.extxyz" >> "$O/sample.log" 2>&1
    log "teacher csp fast $s exit $?"
  done
fi
for s in 1 2 4; do
  timeout 60 python3 -m matgen sample --checkpoint "$CK" --sampler consistency --steps $s --task csp \
    --compositions-from /tmp/test_rows.csv --batch-size 1024 --seed 0 --no-progress \
    --out "$O/student_csp${CSP_ROWS}_s$s.extxyz" >> "$O/sample.log" 2>&1
  log "student csp steps $s exit $?"
done
[ -n "${QUICK:-}" ] || timeout 60 python3 -m matgen sample --checkpoint "$CK" --sampler consistency --steps 2 --num 1000 \
  --batch-size 1000 --seed 0 --no-progress --out "$O/student_gen1000_s2.extxyz" >> "$O/sample.log" 2>&1
log "student gen exit $?"
[ -n "${QUICK:-}" ] || timeout 80 python3 -m matgen sample --task csp --compositions-from /tmp/test_rows.csv --batch-size 1024 \
  --seed 0 --no-progress --out "$O/teacher_csp${CSP_ROWS}_pc1000.extxyz" >> "$O/sample.log" 2>&1
log "teacher csp pc1000 exit $? $(tail -c 200 $O/sample.log | tr '\n' ' ')"
[ -n "${QUICK:-}" ] || timeout 70 python3 benchmarks/gpu_throughput.py --variants "" --checkpoint "$CK" --sample-n 1024 \
  --sample-variants consistency:1,consistency:2,consistency:4 --out "$O/throughput_student.json" > "$O/throughput.log" 2>&1
[ -n "${QUICK:-}" ] || timeout 60 python3 benchmarks/gpu_throughput.py --variants "" --checkpoint matgen/assets/models/default --sample-n 1024 \
  --sample-variants pc:100,fast:20 --out "$O/throughput_teacher.json" >> "$O/throughput.log" 2>&1
log "throughput exit $?"
[ -n "${QUICK:-}" ] || timeout 120 python3 benchmarks/conditional_hit_rate.py --checkpoint "$CK" --sampler consistency --steps 2 \
  --num 200 --guidance 2 --batch-size 400 --device cuda --train-csv /tmp/datasets/mp20_reduced/train.csv \
  --note "consistency-distilled student, 2 steps" --out "$O/conditional_hit_rate_student.json" > "$O/hitrate.log" 2>&1
log "hit rate exit $?"; kill %1 2>/dev/null; log "done"
# the device returns at most 8 files: everything but the weights goes back as one archive
cd "$O" && tar czf results.tar.gz --remove-files *.extxyz *.json *.log *.csv 2>/dev/null; ls -la "$O"
