#!/usr/bin/env bash
# Measurements of the shipped default model on the lent GPU (issues 8 and 16), < 10 min; it can
# run detached beside an ablation round (ablate.sh) on the same GPU:
#   (O=/tmp/evalout setsid nohup bash benchmarks/device/eval_default.sh > /tmp/eval.nohup 2>&1 < /dev/null &)
# Needs, carried: .whl and .devdata (see train_mp20.sh). Writes into ${O:-/tmp/evalout}:
#   gen_1000.extxyz (de novo, the model's default sampler), csp_test${K20_ROWS}_k20.extxyz
#   (best-of-20 CSP on the first K20_ROWS test rows), conditional_hit_rate_gpu.json (N = 200 per
#   window and strategy), throughput_sample.json, logs; ${O}/DONE at the end.
# Metrics are computed afterwards on the CPU machine with `matgen evaluate` (see the README).
set -u
O=${O:-/tmp/evalout}; mkdir -p "$O"
CK=${CK:-matgen/assets/models/default}
K20_ROWS=${K20_ROWS:-500}
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$O/driver.log"; }
source benchmarks/device/_env.sh
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.get_device_name(0))' 2>&1)"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$O/gpu_util.csv" 2>&1 &
python3 -c "import pandas as pd; pd.read_csv('/tmp/datasets/mp20_reduced/test.csv').head($K20_ROWS).to_csv('/tmp/test_k20.csv', index=False)"
timeout 150 python3 -m matgen sample --checkpoint "$CK" --num 1000 --batch-size 1000 --seed 0 --no-progress \
  --out "$O/gen_1000.extxyz" > "$O/sample_gen.log" 2>&1
log "gen 1000 exit $? $(tail -c 200 $O/sample_gen.log | tr '\n' ' ')"
timeout 200 python3 -m matgen sample --checkpoint "$CK" --task csp --compositions-from /tmp/test_k20.csv \
  --num 20 --batch-size 2000 --seed 1 --no-progress --out "$O/csp_test${K20_ROWS}_k20.extxyz" > "$O/sample_k20.log" 2>&1
log "best-of-20 exit $? $(tail -c 200 $O/sample_k20.log | tr '\n' ' ')"
timeout 150 python3 benchmarks/conditional_hit_rate.py --checkpoint "$CK" --num 200 --guidance 2 \
  --batch-size 400 --device cuda --train-csv /tmp/datasets/mp20_reduced/train.csv \
  --note "shipped default model $(python3 -c "from matgen.generate import weights_id; print(weights_id('$CK'))"), run on $(nvidia-smi --query-gpu=name --format=csv,noheader)" \
  --out "$O/conditional_hit_rate_gpu.json" > "$O/hitrate.log" 2>&1
log "hit rate exit $? $(tail -c 300 $O/hitrate.log | tr '\n' ' ')"
timeout 90 python3 benchmarks/gpu_throughput.py --config configs/train/mp20_dense.yaml --variants "" --checkpoint "$CK" \
  --sample-n 1024 --sample-variants pc:1000,fast:50,fast:20 --out "$O/throughput_sample.json" > "$O/throughput_sample.log" 2>&1
log "sampling throughput exit $?"
kill %1 2>/dev/null; log "done"; touch "$O/DONE"
