#!/usr/bin/env bash
# Issue 22 on the GPU machine: paired seeds of arms H and D of benchmarks/generative_campaign.py
# at the CPU acceptance settings (60 labels, 5 rounds, 48 generated per round, 60 x 16 fine-tuning
# steps), generator pinned to 34fe27b86562 like the CPU seeds, one process per arm-seed, all
# detached at once; results merge into $W/gc.json (their settings say --device cuda, so they form
# their own file), stores under $W/work. Carry .gc (benchmarks/device/prepare_gc_carry.sh).
# Measured 2026-12-04 on one H200 (16 cores): 16 processes (8 seeds x H, D) labelled 24 of 60 in
# 4.9 min after a 0.5-min judge fit, GPU 99% busy; the batch itself (seeds 100-107): all 16 done
# 11.4 min after a 0.6-min judge fit (a 562-s call + a 156-s follow-up). Two calls:
# Since 2026-12-06 (the default generator with its composition model, which with the fine-tuning
# data is too large for one carry): MODEL=tree prepare_gc_carry.sh; a STAGE=setup call with the
# four large tracked files it prints moved aside, then at once a STAGE=run call with them back
# (generative_campaign_h100_compfirst.json). Before that, two calls:
#   setsid nohup env SEEDS="100 101 102 103 104 105 106 107" bash benchmarks/device/generative_campaign.sh \
#     > /tmp/gc.nohup 2>&1 < /dev/null & sleep 560; bash benchmarks/device/generative_campaign_collect.sh
#   for i in $(seq 110); do sleep 5; [ -f /tmp/gc/ALL_DONE ] && break; done; \
#     bash benchmarks/device/generative_campaign_collect.sh
# (the second within ~25 s of the first, before the machine is given back). Here: copy gc.json to
# benchmarks/results/generative_campaign_h200_60.json and decide (README, issue 22) with
#   python benchmarks/generative_campaign.py --paired-over \
#     benchmarks/results/generative_campaign_cpu60.json benchmarks/results/generative_campaign_h200_60.json
# Tried at tiny size on
# the CPU: W=/tmp/gct NO_PIP=1 PY=.venv/bin/python DEVICE=cpu SEEDS=900 \
#   EXTRA="--rounds 1 --labels 2 --pool-per-round 4 --finetune-steps 2" bash benchmarks/device/generative_campaign.sh
set -u
W=${W:-/tmp/gc}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; SEEDS=${SEEDS:-"100 101"}
EXTRA=${EXTRA:-}; STAGE=${STAGE:-all}; ARMS=${ARMS:-"H D"}
# STAGE=setup installs, unpacks and fits the judge only; STAGE=run (a later call on the same warm
# machine) starts the arms on what setup left in /tmp: two calls whose carries each fit 64 MiB
# (setup with .gc but the model weights moved aside, run with the weights but no .gc).
# ARMS=H reruns one arm only (its D seeds already measured with the same settings: D does not
# fine-tune, so a fix to fine-tuning leaves it unchanged); --paired-over pairs the two files.
mkdir -p "$W/logs" "$W/data/mp20_reduced" "$W/data/hull_refs"
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$W/driver.log"; }
log start seeds $SEEDS
if [ "$STAGE" = run ]; then [ -d /tmp/site ] && export PYTHONPATH=/tmp/site:$PWD
elif [ -z "${NO_PIP:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gc/whl/*.whl > "$W/pip.log" 2>&1 || log pip failed
  export PYTHONPATH=/tmp/site:$PWD
fi
if [ "$STAGE" != run ]; then  # the data (a run call finds them where setup unpacked them)
  for s in train val test; do xz -dc .gc/data/mp20_reduced/$s.csv.xz > "$W/data/mp20_reduced/$s.csv"; done
  cp .gc/data/hull_refs/*.json.gz "$W/data/hull_refs/"
  xz -dc .gc/data/hull_refs/mp_e_form_compositions.csv.xz | gzip > "$W/data/hull_refs/mp_e_form_compositions.csv.gz"
fi
CK=$W/model GEN_NOTE=${GEN_NOTE:-generator 34fe27b86562}
if [ -f .gc/model/model.json ]; then  # the pinned generator
  mkdir -p "$W/model" && cp .gc/model/model.json "$W/model/" \
    && xz -dc .gc/model/model.safetensors.xz > "$W/model/model.safetensors"
else  # prepare_gc_carry.sh MODEL=tree: the tracked default (composition model included)
  CK=$PWD/matgen/assets/models/default
fi
export MATGEN_DATA_DIR=$W/data MATGEN_CACHE_DIR=$W/cache PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 \
  PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
log installed
(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 10 > "$W/gpu_util.csv" 2>/dev/null &)
# the judge is fitted once (it is cached in the work folder) before the arm processes start
if [ "$STAGE" != run ]; then
  PYTHONPATH=$PWD/benchmarks:${PYTHONPATH:-} $PY -c "
from pathlib import Path; from generative_campaign import build_judge
j = build_judge('composition', Path('$W/data'), Path('$W/work')); print(getattr(j, 'metrics', None))" \
    > "$W/logs/judge.log" 2>&1 || log judge failed
  log judge fitted
fi
[ "$STAGE" = setup ] && { log setup done; touch "$W/SETUP_DONE"; exit 0; }
for s in $SEEDS; do for a in $ARMS; do
  $PY benchmarks/generative_campaign.py --device $DEVICE --seeds $s --arms $a --rounds 5 \
    --labels 60 --pool-per-round 48 --finetune-steps 60 --finetune-batch 16 \
    --checkpoint "$CK" --data "$W/data" --work "$W/work" --out "$W/gc.json" $EXTRA \
    --note "H and D seeds on the GPU machine (device tool, --device $DEVICE), CPU acceptance settings; $GEN_NOTE" \
    > "$W/logs/${a}$s.log" 2>&1 &
done; done
wait
log all done; touch "$W/ALL_DONE"
