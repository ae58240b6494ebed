#!/usr/bin/env bash
# Issue #10: DDP scaling of `matgen train --config configs/train/mp20.yaml` on nvidia-h200-x2,
# 1 vs 2 GPUs of one host at the same global batch. Needs, carried: .whl and .devdata (see
# train_mp20.sh). Results land in $OUT (or $W): ddp_scaling.tar.gz with both runs' metrics.csv,
# logs and a 1 s nvidia-smi memory/utilisation trace.
# Weak scaling (issue #16: per-GPU batch fixed, >= 1.85x crystals/s on 2 GPUs), the shipped
# model's network and settings:
#   MODE=weak CONFIG=configs/train/mp20_dense.yaml PER_GPU=1024 SET='{"sync_every": 8}' \
#   STEPS=1500 bash benchmarks/device/ddp_scaling.sh
# (each run gets a derived config: batch_size = PER_GPU x ranks, plus the SET overrides).
# SET2='{"ddp_bucket_view": true}' adds a third run, 2 GPUs with SET and SET2 (gpu2b): a DDP
# option measured against the plain 2-GPU run in the same call.
set -u
W=${W:-/tmp/ddp}; mkdir -p "$W"
STEPS=${STEPS:-800}; MODE=${MODE:-strong}; CONFIG=${CONFIG:-configs/train/mp20.yaml}
PER_GPU=${PER_GPU:-512}; SET=${SET:-"{}"}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source benchmarks/device/_env.sh
nvidia-smi -L > "$W/nvidia_smi_L.txt"; nvidia-smi topo -m > "$W/topo.txt" 2>&1
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 1 > "$W/gpu_trace.csv" 2>&1 &
for R in 1 2 ${SET2:+2b}; do
  n=${R%b}; S=$SET
  [ "$R" = 2b ] && S=$(python3 -c "import json, sys; print(json.dumps({**json.loads(sys.argv[1]), \
**json.loads(sys.argv[2])}))" "$SET" "$SET2")
  echo "[$(date -u +%H:%M:%S)] start nproc=$n ($R: $S)" >> "$W/driver.log"
  C=$CONFIG
  if [ "$MODE" = weak ]; then  # the global batch grows with the ranks
    C=$W/weak_gpu$R.yaml
    python3 -c "import json, sys, yaml; raw = yaml.safe_load(open(sys.argv[1])); \
raw.update(json.loads(sys.argv[4]), batch_size=int(sys.argv[3])); \
yaml.safe_dump(raw, open(sys.argv[2], 'w'))" "$CONFIG" "$C" $((PER_GPU * n)) "$S"
  fi
  timeout ${RUN_LIMIT:-200} python3 -m torch.distributed.run --standalone --nproc_per_node=$n -m matgen train \
    --config "$C" --out "$W/gpu$R" --max-steps "$STEPS" --no-progress > "$W/train_gpu$R.log" 2>&1
  rc=$?  # before the date substitution below, which would reset $?
  echo "[$(date -u +%H:%M:%S)] end nproc=$n ($R) exit $rc" >> "$W/driver.log"
  cp "$W/gpu$R/metrics.csv" "$W/metrics_gpu$R.csv" 2>/dev/null
done
cat "$W/driver.log"; tail -n 3 "$W"/train_gpu*.log
tar czf "${OUT:-$W}/ddp_scaling.tar.gz" -C "$W" $(cd "$W" && ls weak_gpu*.yaml metrics_gpu*.csv train_gpu*.log 2>/dev/null) driver.log gpu_trace.csv nvidia_smi_L.txt topo.txt
