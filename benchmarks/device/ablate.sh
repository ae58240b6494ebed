#!/usr/bin/env bash
# Device driver for an ablation round (benchmarks/ablation.py), started detached by the first call:
#   setsid nohup bash benchmarks/device/ablate.sh > /tmp/abl.nohup 2>&1 < /dev/null &
# Carried: .whl, .devdata (gzipped mp20_reduced + processed cache). SET picks the variant set,
# SOLO the run whose sampling speed is measured; TEST=1 scores the WEIGHTS runs (or TEST_RUNS="a b")
# on the whole public test split with the CPU default sampler (fast, 50 steps), SOLO also with
# its best sampler on validation; WEIGHTS=1 brings SOLO's weights back, WEIGHTS="a b" those of
# the named runs. GEN=1 also samples 1,000 de novo crystals per tested run and scores them.
# EVAL_SEEDS=0,1 samples validation with both seeds and selects on them pooled. MINUTES overrides
# the set's training budget (a short smoke test of a set). PROFILE=1 first
# profiles dense training steps (benchmarks/profile_train_step.py, eager and torch.compile).
# Every later device call re-sends the working tree (and drops ignored paths it does not carry),
# so the driver first copies its source to /tmp/src and runs from there.
set -u
if [ "$PWD" != /tmp/src ]; then rm -rf /tmp/src && cp -rL "$PWD" /tmp/src && cd /tmp/src || exit 1; fi
W=${W:-/tmp/abl}; mkdir -p "$W/export"
SET=${SET:-benchmarks/ablations/round1.yaml}; SOLO=${SOLO:-dense_csp}
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$W/driver.log"; }
log "start $SET"
source benchmarks/device/_env.sh
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 10 > "$W/gpu_util.csv" 2>&1 &
log "installed; $(python3 -c 'import torch;print(torch.__version__, torch.cuda.device_count())' 2>&1)"
if [ -n "${AB_GROUPS:-}" ]; then  # throughput of the dense config with 1 vs 4 size groups first
  for G in 1 4; do
    timeout 120 python3 benchmarks/gpu_throughput.py --config configs/train/mp20_dense.yaml --model size_groups=$G \
      --steps 80 --warmup 30 --variants bf16 --checkpoint first-run --sample-n 1000 --sample-variants pc:100,fast:50 \
      --sample-split val --keep-run /tmp/tp_g$G --out "$W/throughput_groups$G.json" > "$W/throughput_groups$G.log" 2>&1
  done
  log "size groups A/B: $(grep -h -E '^(train|sample)' $W/throughput_groups*.log | tr '\n' ' ' | tail -c 700)"
fi
if [ -n "${PROFILE:-}" ]; then  # PROFILE=1: where a dense training step's time goes, first:
  # eager (the default) and torch.compile (2-core CPU, hidden 64, batch 32: 111 vs 191 ms a step)
  for V in eager compile; do
    timeout 300 python3 benchmarks/profile_train_step.py --config configs/train/mp20_dense.yaml \
      --set compile=$([ $V = compile ] && echo true || echo false) --warmup 30 --steps 10 \
      --out "$W/profile_$V.json" > "$W/profile_$V.log" 2>&1
    log "profile $V exit $?: $(grep -E '"(wall_ms_per_step|gpu_busy_share|kernels_per_step|host_syncs_per_step)"' "$W/profile_$V.json" 2>/dev/null | tr -d ' \n')"
  done
fi
python3 benchmarks/ablation.py --set "$SET" --work "$W/runs" --out "$W/ablation.json" \
  --stage train --probe-s ${PROBE_S:-0} ${MINUTES:+--minutes $MINUTES} > "$W/ablation_train.log" 2>&1
log "train stage exit $?: $(grep ablation $W/ablation_train.log | tr '\n' ' ' | tail -c 600)"
CK="$W/runs/$SOLO/run/checkpoints/last"
# WEIGHTS=1: the SOLO run's weights; WEIGHTS="a b": those runs' (benchmarks/device/export_weights.sh)
[ "${WEIGHTS:-}" = 1 ] && WEIGHTS=$SOLO
[ -z "${WEIGHTS:-}" ] || bash benchmarks/device/export_weights.sh $WEIGHTS >> "$W/driver.log" 2>&1
pack() { python3 - "$W" <<'PY'
import sys, tarfile, glob, os
w = sys.argv[1]
with tarfile.open(f"{w}/export/results.tar.gz", "w:gz") as t:
    for p in glob.glob(f"{w}/runs/*/*.log") + glob.glob(f"{w}/runs/*/*.json") + glob.glob(f"{w}/runs/*/config.yaml") \
           + glob.glob(f"{w}/runs/*/run/metrics.csv") + glob.glob(f"{w}/runs/*/probe/metrics.csv") \
           + glob.glob(f"{w}/*.json") + glob.glob(f"{w}/*.log") + glob.glob(f"{w}/*.csv") + glob.glob(f"{w}/test/*") \
           + glob.glob(f"{w}/runs/*/*.extxyz"):
        if os.path.isfile(p) and os.path.getsize(p) < 30e6:
            t.add(p, arcname=os.path.relpath(p, w))
PY
}
pack; log "exported weights + logs"; touch "$W/EXPORTED"
python3 benchmarks/ablation.py --set "$SET" --work "$W/runs" --out "$W/ablation.json" \
  --stage eval --eval-rows ${EVAL_ROWS:-500} --eval-seeds ${EVAL_SEEDS:-0} --eval-workers 3 --sample-timeout ${SAMPLE_TIMEOUT:-360} \
  > "$W/ablation_eval.log" 2>&1
log "eval stage exit $?"; pack; touch "$W/EVALUATED"
throughput() {
  timeout 200 python3 benchmarks/gpu_throughput.py --config "$W/runs/$SOLO/config.yaml" --steps 120 --warmup 40 \
    --variants bf16 --checkpoint "$CK" --sample-n 1024 --sample-variants pc:100,fast:50 \
    --out "$W/throughput.json" > "$W/throughput.log" 2>&1
  log "throughput exit $?"; pack
}
[ -n "${TEST:-}" ] || { throughput; touch "$W/ALL_DONE"; log "all done"; exit 0; }
mkdir -p "$W/test"
# On the public test split (report only; validation picks): every run in TEST_RUNS (default: the
# WEIGHTS runs, else SOLO) with the CPU default sampler (fast, 50 steps), and SOLO also with its
# best sampler on validation when that is another one. Results: test/csp_test_<run>_<sampler>.json
BEST=$(python3 -c "
import json, sys; sys.path.insert(0, 'benchmarks'); from ablation import best_sampler, sampler_spec
print(' '.join(sampler_spec(best_sampler(json.load(open('$W/ablation.json')), '$SOLO') or 'pc')[0]))")
log "test split; $SOLO's validation-best sampler: $BEST"
TEST_RUNS=${TEST_RUNS:-${WEIGHTS:-$SOLO}}; [ "$TEST_RUNS" = 1 ] && TEST_RUNS=$SOLO
JOBS=""
for NAME in $TEST_RUNS; do JOBS="$JOBS $NAME:fast"; done
[ "$BEST" != "--sampler fast --steps 50" ] && JOBS="$JOBS $SOLO:best"
PIDS=""
for J in $JOBS; do
  NAME=${J%%:*}; S=${J##*:}; ARGS="--sampler fast --steps 50"; [ "$S" = best ] && ARGS=$BEST
  timeout 420 python3 -m matgen sample --checkpoint "$W/runs/$NAME/run/checkpoints/last" --task csp \
    --compositions-from /tmp/datasets/mp20_reduced/test.csv --num 1 $ARGS --batch-size 1200 --seed 0 \
    --no-progress --out "$W/test/csp_test_${NAME}_$S.extxyz" > "$W/test/sample_${NAME}_$S.log" 2>&1 & PIDS="$PIDS $!"
done; wait $PIDS  # not a bare wait: nvidia-smi runs in the background for good
echo "$BEST" > "$W/test/best_sampler.txt"
NJ=$(echo $JOBS | wc -w); PIDS=""
for J in $JOBS; do
  NAME=${J%%:*}; S=${J##*:}
  python3 -m matgen evaluate --task csp --generated "$W/test/csp_test_${NAME}_$S.extxyz" \
    --reference /tmp/datasets/mp20_reduced/test.csv --workers $(( 15 / NJ > 1 ? 15 / NJ : 1 )) \
    --out "$W/test/csp_test_${NAME}_$S.json" > "$W/test/eval_${NAME}_$S.log" 2>&1 & PIDS="$PIDS $!"
done; wait $PIDS
for F in "$W"/test/*.json; do log "test $(basename "$F"): $(grep -E '"match_rate"|"rmse"' "$F" | tr -d ' \n')"; done
pack
# STOP_AFTER_TEST=1: end here (a one-call round, benchmarks/device/oneshot.sh, has no time left)
[ -z "${STOP_AFTER_TEST:-}" ] || { touch "$W/ALL_DONE"; log "all done (stopped after the test split)"; exit 0; }
if [ -n "${GEN:-}" ]; then  # GEN=1: de novo, 1,000 samples per TEST run, scored here (no S.U.N.);
  # SOLO also with the anti-annealing slope off (GEN_SLOPE, default 0: on 200 CPU samples of the
  # round-5 model struct validity 1.000 vs 0.955 at the trained slope 10)
  GJOBS=""; for NAME in $TEST_RUNS; do GJOBS="$GJOBS $NAME:"; done; GJOBS="$GJOBS $SOLO:${GEN_SLOPE:-0}"
  # COV needs matminer (5 MB wheel, over the carry limit next to .whl/.devdata): without it the
  # device scores validity/Wasserstein only and the gen_*.extxyz come back for COV on the CPU
  NOCOV=$(python3 -c 'import matminer' 2>/dev/null || echo --no-coverage)
  PIDS=""; NR=$(echo $GJOBS | wc -w)
  for J in $GJOBS; do
    NAME=${J%%:*}; SL=${J##*:}; TAG=$NAME${SL:+_slope$SL}
    ( timeout 120 python3 -m matgen sample --checkpoint "$W/runs/$NAME/run/checkpoints/last" --num 1000 \
        ${SL:+--flow-slope $SL} --batch-size 1000 --seed 0 --no-progress --out "$W/test/gen_$TAG.extxyz" > "$W/test/sample_gen_$TAG.log" 2>&1 \
      && timeout 420 python3 -m matgen evaluate --task gen --generated "$W/test/gen_$TAG.extxyz" \
        --reference /tmp/datasets/mp20_reduced/test.csv --train /tmp/datasets/mp20_reduced/train.csv \
        $NOCOV --workers $(( 15 / NR > 1 ? 15 / NR : 1 )) --out "$W/test/gen_$TAG.json" > "$W/test/eval_gen_$TAG.log" 2>&1 ) &
    PIDS="$PIDS $!"
  done; wait $PIDS
  for J in $GJOBS; do
    NAME=${J%%:*}; SL=${J##*:}; TAG=$NAME${SL:+_slope$SL}
    log "gen $TAG: $(grep -E '"(comp_valid|struct_valid|valid|cov_recall|cov_precision|wdist_density|wdist_num_elements)"' "$W/test/gen_$TAG.json" 2>/dev/null | tr -d ' \n')"
  done; pack
fi
throughput  # last: the test split matters more if the device time runs out
touch "$W/ALL_DONE"; log "all done"
