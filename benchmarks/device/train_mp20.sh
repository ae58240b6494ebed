#!/usr/bin/env bash
# Driver for the default-model run on the lent H100 (pattern: ../shared/tools/DEVICE-LONG-RUNS.md).
# Started detached by the first device call:
#   setsid nohup bash benchmarks/device/train_mp20.sh > /tmp/run.nohup 2>&1 < /dev/null &
# Needs, carried: .whl (wheels from ../shared/tools/device-wheels.sh) and .devdata/datasets
# (gzipped copies of mp20_reduced and hull_refs, never committed). Everything lands in $W.
set -u
W=${W:-/tmp/run}; mkdir -p "$W"
TRAIN_MIN=${TRAIN_MIN:-14}
CONFIG=${CONFIG:-configs/train/mp20.yaml}
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$W/driver.log"; }
log "start"
[ -n "${NO_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >> "$W/pip.log" 2>&1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p /tmp/datasets && cp -r .devdata/datasets/* /tmp/datasets/ && gunzip -f /tmp/datasets/mp20_reduced/*.gz
export MATGEN_DATA_DIR=/tmp/datasets MATGEN_CACHE_DIR=/tmp/matgen_cache
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$W/gpu_util.csv" 2>&1 &
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1)"

# 1. training throughput at batch 256: the shipped size and a DiffCSP-sized (12.8M) variant
timeout 300 python3 benchmarks/gpu_throughput.py --config "$CONFIG" --steps 150 --warmup 50 \
  --variants ${VARIANTS:-bf16,fp32} --out "$W/throughput_train.json" > "$W/throughput_train.log" 2>&1
[ -n "${SKIP_BIG:-}" ] || timeout 200 python3 benchmarks/gpu_throughput.py --config "$CONFIG" --steps 120 --warmup 50 \
  --model hidden=512,vectors=128 --variants bf16 --out "$W/throughput_train_12m.json" > "$W/throughput_train_12m.log" 2>&1
log "throughput done: $(tail -c 400 $W/throughput_train.log | tr '\n' ' ')"

# 2. train for TRAIN_MIN minutes; the cosine schedule spans the steps that fit
SPS=$(python3 -c "import json;r=json.load(open('$W/throughput_train.json'));print(max(x['steps_per_s'] for x in r['training'] if x['variant']=='bf16'))" 2>/dev/null || echo 10)
STEPS=$(python3 -c "print(int($SPS*$TRAIN_MIN*60*0.97))")
log "training $STEPS steps (${SPS} steps/s measured), max $TRAIN_MIN min"
python3 -m matgen train --config "$CONFIG" --out "$W/mp20" --max-steps "$STEPS" --max-time "$TRAIN_MIN" > "$W/train.log" 2>&1
log "train exit $?"; touch "$W/TRAIN_DONE"
CK="$W/mp20/checkpoints/last"

# 3. sampling throughput and CSP samples for the MP-20 test split
timeout 240 python3 benchmarks/gpu_throughput.py --config "$CONFIG" --variants "" --checkpoint "$CK" \
  --sample-n 1024 --out "$W/throughput_sample.json" > "$W/throughput_sample.log" 2>&1
log "sampling throughput done"
timeout 300 python3 -m matgen sample --checkpoint "$CK" --compositions-from /tmp/datasets/mp20_reduced/test.csv \
  --num 1 --batch-size 1024 --seed 0 --out "$W/csp_test_pc.extxyz" > "$W/sample_csp.log" 2>&1
log "csp sampling exit $?"
timeout 120 python3 -m matgen sample --checkpoint "$CK" --num 1000 --batch-size 1000 --seed 0 \
  --out "$W/gen_1000.extxyz" > "$W/sample_gen.log" 2>&1
log "gen sampling exit $?"
timeout 240 python3 benchmarks/surrogates_relax.py --n 256 --n-ase 8 --batch-size 256 \
  --data-dir /tmp/datasets --out "$W/surrogates_relax.json" > "$W/relax.log" 2>&1
log "relax bench exit $?"
timeout 240 python3 benchmarks/surrogates_hull.py --n ${HULL_N:-4523} --batch-size 512 \
  --data-dir /tmp/datasets --out "$W/surrogates_hull.json" > "$W/hull.log" 2>&1
log "hull bench exit $?"
touch "$W/ALL_DONE"; log "all done"
