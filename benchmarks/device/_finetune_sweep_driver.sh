#!/usr/bin/env bash
# The detached half of finetune_sweep.sh (run from its copy of the tree, $W.src, with its
# exported variables).
set -u
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$W/driver.log"; }
trap 'touch "$W/ALL_DONE"' EXIT  # a driver that stops early releases the watching call
# a variant with nproc > 1 trains with DDP: NVLink multicast off, as ddp_scaling.sh (KINDS.md)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
log start; source benchmarks/device/_env.sh; log installed
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 10 \
  > "$W/gpu_util.csv" 2>&1 &
python3 benchmarks/ablation.py --set "$SET" --work "$W/runs" --out "$W/ablation.json" \
  --stage train --only "$(echo $RUNS | tr ' ' ',')" ${MINUTES:+--minutes $MINUTES} \
  > "$W/train.log" 2>&1
log "trained: exit $?"; touch "$W/TRAINED"
W=$W bash benchmarks/device/export_weights.sh $RUNS >> "$W/driver.log" 2>&1; log exported
touch "$W/EXPORTED"  # a watching call that ends now brings these back (finetune_sweep.sh)
for R in $RUNS; do  # composition-first de novo, as the shipped default samples
  [ -n "${COMPOSITION_FROM:-}" ] && cp "$COMPOSITION_FROM"/composition.* "$W/runs/$R/run/checkpoints/last/"
done
if [ -n "${TRAIN_ROWS_LIMIT:-}" ]; then  # CSP recall on 1,000 of the rows the runs trained on
  python3 benchmarks/train_rows.py --data-dir /tmp/datasets/mp20_reduced --limit "$TRAIN_ROWS_LIMIT" \
    --rows 1000 --out /tmp/train_rows.csv >> "$W/driver.log" 2>&1 && export TRAIN_REF=/tmp/train_rows.csv
fi
PIDS=""; I=0; NGPU=$(nvidia-smi -L 2>/dev/null | grep -c GPU); [ "$NGPU" -ge 1 ] || NGPU=1
for R in $RUNS; do  # the runs' scorings spread over the machine's GPUs
  CUDA_VISIBLE_DEVICES=$((I % NGPU)) CK="$W/runs/$R/run/checkpoints/last" NAME=$R P=3 \
    OPT=--clash-floor VALUES=0.7 \
    DEADLINE=$SWEEP_S OUT="$W/sweeps" bash benchmarks/device/sampler_sweep.sh \
    > "$W/sweep_$R.log" 2>&1 & PIDS="$PIDS $!"; I=$((I + 1))
done
if [ -n "$GEN_EXTRA" ]; then  # the shipped default's extra de novo seeds
  mkdir -p /tmp/denovo_extra
  for S in $GEN_EXTRA; do
    python3 -m matgen sample --checkpoint matgen/assets/models/default --num 1000 \
      --batch-size 1000 --sampler fast --steps 50 --seed "$S" --no-progress \
      --out "/tmp/denovo_extra/gen_default_s$S.extxyz" > "/tmp/denovo_extra/sample_s$S.log" 2>&1
  done
  tar czf "$W/export/denovo_extra.tgz" -C /tmp denovo_extra; log "extra de novo seeds done"
fi
wait $PIDS  # not a bare wait: nvidia-smi runs in the background for good
log "swept: $(ls "$W/sweeps" | tr '\n' ' ')"
tar czf "$W/export/results.tgz" -C "$W" sweeps driver.log train.log gpu_util.csv ablation.json \
  $(cd "$W" && ls sweep_*.log runs/*/run/metrics.csv runs/*/config.yaml runs/*/*.log 2>/dev/null)
touch "$W/ALL_DONE"; log done
