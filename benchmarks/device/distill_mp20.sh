#!/usr/bin/env bash
# Issue #11 on the lent GPU, one device call (< 10 min): consistency-distil the shipped default
# model (configs/train/distill_mp20.yaml) for DISTILL_MIN minutes, then sample with the student
# and the teacher on the first CSP_ROWS mp20_reduced test rows and 1,000 de novo, and time
# the samplers at batch 1024. Needs, carried: .whl (WHL=...) and .devdata. Writes into
# ${OUT:-/tmp/distillout}: student weights (split in 15 MB parts), metrics.csv, train log,
# extxyz files, throughput JSON. Metrics are computed afterwards with `matgen evaluate` on CPU.
set -u
O=${OUT:-/tmp/distillout}; mkdir -p "$O"
W=/tmp/distill; mkdir -p "$W"
DISTILL_MIN=${DISTILL_MIN:-6}; CSP_ROWS=${CSP_ROWS:-500}
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$O/driver.log"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL:-.whl}/*.whl > /tmp/pip.log 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p /tmp/datasets && cp -r .devdata/datasets/* /tmp/datasets/ && gunzip -f /tmp/datasets/mp20_reduced/*.gz
export MATGEN_DATA_DIR=/tmp/datasets MATGEN_CACHE_DIR=/tmp/matgen_cache
[ -d .devdata/cache ] && mkdir -p /tmp/matgen_cache && cp -r .devdata/cache/* /tmp/matgen_cache/
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1)"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$O/gpu_util.csv" 2>&1 &
python3 -m matgen train --config configs/train/distill_mp20.yaml --out "$W/run" --max-time "$DISTILL_MIN" \
  --no-progress ${RESUME:+--resume} > "$O/train.log" 2>&1
log "distill exit $? $(tail -c 300 $O/train.log | tr '\n' ' ')"
CK="$W/run/checkpoints/last"
cp "$W/run/metrics.csv" "$O/metrics.csv"; cp "$CK/model.json" "$O/model.json"
split -b 15M "$CK/model.safetensors" "$O/model.safetensors.part-"
python3 -c "import pandas as pd; pd.read_csv('/tmp/datasets/mp20_reduced/test.csv').head($CSP_ROWS).to_csv('/tmp/test_rows.csv', index=False)"
for s in 1 2 4; do
  timeout 60 python3 -m matgen sample --checkpoint "$CK" --sampler consistency --steps $s --task csp \
    --compositions-from /tmp/test_rows.csv --batch-size 1024 --seed 0 --no-progress \
    --out "$O/student_csp${CSP_ROWS}_s$s.extxyz" >> "$O/sample.log" 2>&1
  log "student csp steps $s exit $?"
done
timeout 60 python3 -m matgen sample --checkpoint "$CK" --sampler consistency --steps 2 --num 1000 \
  --batch-size 1000 --seed 0 --no-progress --out "$O/student_gen1000_s2.extxyz" >> "$O/sample.log" 2>&1
log "student gen exit $?"
timeout 80 python3 -m matgen sample --task csp --compositions-from /tmp/test_rows.csv --batch-size 1024 \
  --seed 0 --no-progress --out "$O/teacher_csp${CSP_ROWS}_pc1000.extxyz" >> "$O/sample.log" 2>&1
log "teacher csp pc1000 exit $? $(tail -c 200 $O/sample.log | tr '\n' ' ')"
timeout 70 python3 benchmarks/gpu_throughput.py --variants "" --checkpoint "$CK" --sample-n 1024 \
  --sample-variants consistency:1,consistency:2,consistency:4 --out "$O/throughput_student.json" > "$O/throughput.log" 2>&1
timeout 60 python3 benchmarks/gpu_throughput.py --variants "" --checkpoint matgen/assets/models/default --sample-n 1024 \
  --sample-variants pc:100,fast:20 --out "$O/throughput_teacher.json" >> "$O/throughput.log" 2>&1
log "throughput exit $?"; kill %1 2>/dev/null; log "done"
