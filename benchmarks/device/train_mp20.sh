#!/usr/bin/env bash
# Driver for the default-model run on the lent H100 (pattern: ../shared/tools/DEVICE-LONG-RUNS.md).
# Started detached by the first device call:
#   setsid nohup bash benchmarks/device/train_mp20.sh > /tmp/run.nohup 2>&1 < /dev/null &
# Needs, carried: .whl (wheels from ../shared/tools/device-wheels.sh) and .devdata/datasets
# (gzipped copies of mp20_reduced and hull_refs, never committed; optionally .devdata/cache, the
# processed-dataset cache built here). Everything lands in $W; $W/export holds what comes back.
set -u
W=${W:-/tmp/run}; mkdir -p "$W/export"
TRAIN_MIN=${TRAIN_MIN:-15}
CONFIG=${CONFIG:-configs/train/mp20.yaml}
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$W/driver.log"; }
log "start"
source benchmarks/device/_env.sh
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$W/gpu_util.csv" 2>&1 &
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1)"

# 1. training throughput of the config as shipped (sets the step count of the cosine schedule)
timeout 240 python3 benchmarks/gpu_throughput.py --config "$CONFIG" --steps ${TP_STEPS:-120} --warmup 40 \
  --variants ${VARIANTS:-bf16} --out "$W/throughput_train.json" > "$W/throughput_train.log" 2>&1
log "throughput done: $(tail -c 300 $W/throughput_train.log | tr '\n' ' ')"

# 2. train for TRAIN_MIN minutes; the cosine schedule spans the steps that fit
SPS=$(python3 -c "import json;r=json.load(open('$W/throughput_train.json'));print(max(x['steps_per_s'] for x in r['training']))" 2>/dev/null || echo 10)
STEPS=$(python3 -c "print(int($SPS*$TRAIN_MIN*60*0.96))")
log "training $STEPS steps (${SPS} steps/s measured), max $TRAIN_MIN min"
python3 -m matgen train --config "$CONFIG" --out "$W/mp20" --max-steps "$STEPS" --max-time "$TRAIN_MIN" > "$W/train.log" 2>&1
log "train exit $?"; touch "$W/TRAIN_DONE"
CK="$W/mp20/checkpoints/last"
cp "$CK/model.json" "$W/export/model.json"
split -b 15M "$CK/model.safetensors" "$W/export/model.safetensors.part-"
python3 - "$W" <<'PY' >> "$W/driver.log" 2>&1
import sys, tarfile, glob, os
w = sys.argv[1]
with tarfile.open(f"{w}/export/train_logs.tar.gz", "w:gz") as t:
    for p in [f"{w}/mp20/metrics.csv", f"{w}/train.log", f"{w}/throughput_train.json", f"{w}/throughput_train.log", f"{w}/gpu_util.csv", f"{w}/driver.log", f"{w}/mp20/config.yaml"]:
        if os.path.exists(p): t.add(p, arcname=os.path.basename(p))
PY
log "exported weights: $(ls -la $W/export | tr '\n' ' ')"; touch "$W/EXPORTED"

# 3. CSP samples for the whole MP-20 test split (1 sample) and best-of-20 on its first 200 rows
python3 -c "import pandas as pd; pd.read_csv('/tmp/datasets/mp20_reduced/test.csv').head(200).to_csv('/tmp/test200.csv', index=False)"
timeout 400 python3 -m matgen sample --checkpoint "$CK" --task csp --compositions-from /tmp/datasets/mp20_reduced/test.csv \
  --num 1 --batch-size 2300 --seed 0 --no-progress --out "$W/csp_test_pc.extxyz" > "$W/sample_csp.log" 2>&1
log "csp sampling exit $? $(tail -c 200 $W/sample_csp.log | tr '\n' ' ')"
timeout 120 python3 -m matgen sample --checkpoint "$CK" --num 1000 --batch-size 1000 --seed 0 --no-progress \
  --out "$W/gen_1000.extxyz" > "$W/sample_gen.log" 2>&1
log "gen sampling exit $?"
timeout 240 python3 benchmarks/conditional_hit_rate.py --checkpoint "$CK" --num 200 --guidance 2 \
  --batch-size 400 --device cuda --train-csv /tmp/datasets/mp20_reduced/train.csv \
  --note "H100-trained default model" --out "$W/conditional_hit_rate_h100.json" > "$W/hitrate.log" 2>&1
log "hit rate exit $? $(tail -c 300 $W/hitrate.log | tr '\n' ' ')"
timeout 120 python3 benchmarks/gpu_throughput.py --config "$CONFIG" --variants "" --checkpoint "$CK" \
  --sample-n 1024 --sample-variants pc:1000,fast:50,fast:20 --out "$W/throughput_sample.json" > "$W/throughput_sample.log" 2>&1
log "sampling throughput done"
touch "$W/SAMPLED"
timeout 300 python3 -m matgen sample --checkpoint "$CK" --task csp --compositions-from /tmp/test200.csv \
  --num 20 --batch-size 4000 --seed 1 --no-progress --out "$W/csp_test200_k20.extxyz" > "$W/sample_k20.log" 2>&1
log "best-of-20 sampling exit $?"
touch "$W/ALL_DONE"; log "all done"
