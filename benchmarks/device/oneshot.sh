#!/usr/bin/env bash
# A round that needs no second device call: starts ablate.sh detached (same environment variables),
# waits until it finishes or DEADLINE seconds pass (default 570, under the 600 s call limit), then
# copies what it has exported to $OUT: weights (NAME.tar.part-*), results.tar.gz, ablation.json and
# driver.log. Three device sessions running, a follow-up call that came late found the machine
# given back and the whole run lost; with this, a lost call loses only the time it was to use.
#   SET=benchmarks/ablations/round8.yaml SOLO=c8 WEIGHTS="c8 c8_ema" TEST=1 STOP_AFTER_TEST=1 \
#   EVAL_ROWS=1000 EVAL_SEEDS=0,1 bash benchmarks/device/oneshot.sh
set -u
DEADLINE=${DEADLINE:-570}; export W=${W:-/tmp/abl}
setsid nohup bash benchmarks/device/ablate.sh > /tmp/abl.nohup 2>&1 < /dev/null &
while [ ! -f "$W/ALL_DONE" ] && [ "$SECONDS" -lt "$DEADLINE" ]; do sleep 5; done
cat "$W/driver.log"; tail -5 /tmp/abl.nohup
cp "$W"/export/* "$W/ablation.json" "$W/driver.log" "${OUT:?}"/ 2>/dev/null
ls -la "$OUT"
