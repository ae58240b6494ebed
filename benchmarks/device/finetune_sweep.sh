#!/usr/bin/env bash
# Fine-tune the variants named in RUNS side by side (the others of SET are not trained), then
# score each the way sampler_sweep.sh scores a sampling option (val CSP seeds 0 and 1, 1,000 de
# novo at seeds 0-2 vs val, with TEST=1 (default) the public test CSP seed 0 and de novo seed 0
# vs test), and bring back fp16 weights of each run.
# COMPOSITION_FROM=FOLDER copies that folder's composition model into each run's checkpoint before
# scoring, so de novo is sampled composition-first as with the shipped default (else the denoiser's
# joint mode). GEN_EXTRA="3 4 ..." also draws 1,000 de novo samples of the shipped default per seed
# (denovo_extra.tgz; for the 10,000-sample COV protocol, scored on the CPU). TRAIN_ROWS_LIMIT=N
# (the runs' data.train_limit, seed 0) also scores CSP recall on 1,000 of the rows they trained on.
# Longer than one call: the first call starts it detached and watches; a follow-up call within
# ~25 s runs the same command and only watches (the pattern of oneshot.sh); the same command with
# another W=FOLDER (default /tmp/ft) starts a second job on the warm machine. Each call copies to
# $OUT what is there: results.tgz (sweeps, logs, metrics), and RUN.tar.part-* (weights) of the
# runs named in FETCH="RUN ..." (default none). A call that ends before the job is done brings
# back the newest weights of every run in RUNS instead, so a machine taken back between calls
# loses only the time since (2026-12-06: a 13-minute stage was lost whole that way): the final
# export once the driver has written it (EXPORTED), else a snapshot of each run's newest
# checkpoint (export_weights.sh into $W/snap; its step is printed and kept in model.json). Store
# it with lineage_carry.sh like a finished stage; NO_SNAPSHOT=1 turns this off.
#   MINUTES=5 SET=benchmarks/ablations/round19.yaml RUNS="r19_ctl r19_gen r19_elbo" \
#   bash benchmarks/device/finetune_sweep.sh      (carry .whl, .devdata)
set -u
export SET=${SET:?set SET} RUNS=${RUNS:?set RUNS} W=${W:-/tmp/ft} MINUTES=${MINUTES:-}
export TEST=${TEST:-1} SWEEP_S=${SWEEP_S:-480} GEN_EXTRA=${GEN_EXTRA:-}
export COMPOSITION_FROM=${COMPOSITION_FROM:-}
DEADLINE=${DEADLINE:-560}
if [ ! -f "$W/driver.log" ]; then
  # a follow-up call that found a bare machine (the first call got none) must not train without
  # the carried wheels (2026-12-06: every run died on a missing import and the driver went on)
  if [ -z "${NO_PIP:-}" ] && ! ls "${WHL:-.whl}"/*.whl > /dev/null 2>&1; then
    echo "finetune_sweep: no wheels in ${WHL:-.whl} and no run to follow: carry .whl" >&2; exit 2
  fi
  # the job's own copy of the tree (a second job, W=another folder, may start on the same warm
  # machine while the first still runs)
  mkdir -p "$W/export" "$W/sweeps"; rm -rf "$W.src" && cp -rL "$PWD" "$W.src"
  (cd "$W.src" && setsid nohup bash benchmarks/device/_finetune_sweep_driver.sh \
     > "$W.nohup" 2>&1 < /dev/null &)
  sleep 2
else
  echo "[finetune_sweep] following the run an earlier call started"
fi
while [ ! -f "$W/ALL_DONE" ] && [ "$SECONDS" -lt "$DEADLINE" ]; do sleep 5; done
if [ ! -f "$W/ALL_DONE" ] && [ -z "${NO_SNAPSHOT:-}" ]; then  # the newest weights, while they last
  if [ -f "$W/EXPORTED" ]; then
    for r in $RUNS; do cp "$W/export/$r".tar.part-* "$OUT"/ 2>/dev/null; done
  else
    (cd "$W.src" && export PYTHONPATH=/tmp/site:$W.src W EXPORT=$W/snap \
     && bash benchmarks/device/export_weights.sh $RUNS)
    for r in $RUNS; do cp "$W/snap/$r".tar.part-* "$OUT"/ 2>/dev/null; done
  fi
fi
cat "$W/driver.log"; tail -3 "$W.nohup" "$W/train.log" 2>/dev/null
# results first: what comes back per call is capped (~64 MiB in all), and three runs' weight parts
# crowded results.tgz out in round 23; weights only of the runs named in FETCH (a follow-up
# call with FETCH="RUN" after the results are read returns at once with that run's parts)
cp "$W/export/results.tgz" "${OUT:?}/" 2>/dev/null
for r in ${FETCH:-}; do cp "$W/export/$r".tar.part-* "$OUT"/ 2>/dev/null; done
ls -la "$W/export" "$OUT"
