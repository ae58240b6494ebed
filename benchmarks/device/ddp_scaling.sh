#!/usr/bin/env bash
# Issue #10: DDP scaling of `matgen train --config configs/train/mp20.yaml` on nvidia-h200-x2,
# 1 vs 2 GPUs of one host at the same global batch. Needs, carried: .whl and .devdata (see
# train_mp20.sh). Results land in $OUT (or $W): ddp_scaling.tar.gz with both runs' metrics.csv,
# logs and a 1 s nvidia-smi memory/utilisation trace.
set -u
W=${W:-/tmp/ddp}; mkdir -p "$W"
STEPS=${STEPS:-800}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source benchmarks/device/_env.sh
nvidia-smi -L > "$W/nvidia_smi_L.txt"; nvidia-smi topo -m > "$W/topo.txt" 2>&1
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 1 > "$W/gpu_trace.csv" 2>&1 &
for n in 1 2; do
  echo "[$(date -u +%H:%M:%S)] start nproc=$n" >> "$W/driver.log"
  timeout 200 python3 -m torch.distributed.run --standalone --nproc_per_node=$n -m matgen train \
    --config configs/train/mp20.yaml --out "$W/gpu$n" --max-steps "$STEPS" --no-progress > "$W/train_gpu$n.log" 2>&1
  echo "[$(date -u +%H:%M:%S)] end nproc=$n exit $?" >> "$W/driver.log"
done
cp "$W/gpu1/metrics.csv" "$W/metrics_gpu1.csv"; cp "$W/gpu2/metrics.csv" "$W/metrics_gpu2.csv"
cat "$W/driver.log"; tail -3 "$W/train_gpu1.log" "$W/train_gpu2.log"
tar czf "${OUT:-$W}/ddp_scaling.tar.gz" -C "$W" driver.log metrics_gpu1.csv metrics_gpu2.csv train_gpu1.log train_gpu2.log gpu_trace.csv nvidia_smi_L.txt topo.txt
