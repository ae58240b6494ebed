#!/usr/bin/env bash
# A round whose every device call brings its results back: starts ablate.sh detached (same
# environment variables) unless it already runs on this machine (a follow-up call: then it only
# watches), waits until it finishes or DEADLINE seconds pass (default 570, under the 600 s call
# limit), then copies to $OUT what it has: weights (NAME.tar.part-*), results.tar.gz,
# ablation.json and driver.log. A call that ends while the WEIGHTS runs still train brings back a
# snapshot of their newest checkpoint instead (benchmarks/device/export_weights.sh), so a
# follow-up call that comes late (three device sessions running, that lost a whole round) loses
# only the time since: continue from the snapshot with `init:` in a later call.
#   SET=benchmarks/ablations/round8.yaml SOLO=c8 WEIGHTS="c8 c8_ema" TEST=1 STOP_AFTER_TEST=1 \
#   EVAL_ROWS=1000 EVAL_SEEDS=0,1 bash benchmarks/device/oneshot.sh
set -u
DEADLINE=${DEADLINE:-570}; export W=${W:-/tmp/abl}
if [ -f "$W/driver.log" ]; then  # a follow-up call on the same machine: watch, never restart
  echo "[oneshot] the round started by an earlier call is here: following it"
else
  setsid nohup bash benchmarks/device/ablate.sh > /tmp/abl.nohup 2>&1 < /dev/null &
  sleep 2
fi
while [ ! -f "$W/ALL_DONE" ] && [ "$SECONDS" -lt "$DEADLINE" ] \
      && pgrep -f benchmarks/device/ablate.sh > /dev/null; do sleep 5; done
if [ ! -f "$W/EXPORTED" ] && [ -n "${WEIGHTS:-}" ]; then  # still training: a snapshot
  (cd /tmp/src 2>/dev/null || exit 0; export PYTHONPATH=/tmp/site:/tmp/src  # what _env.sh set up
   bash benchmarks/device/export_weights.sh $([ "$WEIGHTS" = 1 ] && echo "${SOLO:-}" || echo "$WEIGHTS"))
fi
cat "$W/driver.log"; tail -5 /tmp/abl.nohup
cp "$W"/export/* "$W/ablation.json" "$W/driver.log" "${OUT:?}"/ 2>/dev/null
ls -la "$OUT"
