#!/usr/bin/env bash
# After a lineage stage on the warm machine (finetune_sweep.sh's job in $W, default /tmp/ft): the
# uniform soup of the stage's start and its result (benchmarks/model_soup.py, on the device, where
# both are: the 64 MiB carry holds one lineage), then, side by side, the soup at fast 50 and 200
# (val CSP seeds 0+1, de novo seeds 0-2 composition-first, public test CSP seed 0) and the stage
# itself at fast 200 (val and test CSP; its fast 50 is in the driver's sweep). Results come back
# as $OUT/soup.tgz and $OUT/RUN_s200.tgz. From the repository root, on the machine that trained
# RUN, carrying .whl and .devdata/datasets:
#   RUN=l34 BASE=benchmarks/lineage/l32 bash benchmarks/device/lineage_soup.sh
set -u
RUN=${RUN:?set RUN, the stage trained in $W}; BASE=${BASE:?set BASE, the stage it continued}
W=${W:-/tmp/ft}; CK=$W/runs/$RUN/run/checkpoints/last
COMP=${COMPOSITION_FROM:-matgen/assets/models/default}
source benchmarks/device/_env.sh
[ -f "$CK/model.safetensors" ] || { echo "lineage_soup: no $CK (train $RUN first)" >&2; exit 2; }
S=/tmp/soup_ck; rm -rf "$S" && python3 benchmarks/model_soup.py "$BASE" "$CK" --out "$S" || exit 1
cp "$COMP"/composition.* "$S"/
CK=$S OPT=--steps VALUES="50 200" TEST=1 NAME=soup P=4 DEADLINE=${DEADLINE:-300} \
  bash benchmarks/device/sampler_sweep.sh > /tmp/soup_sweep.log 2>&1 & A=$!
CK=$CK OPT=--steps VALUES=200 TEST=1 GEN_SEEDS=none NAME=${RUN}_s200 P=2 DEADLINE=${DEADLINE:-300} \
  bash benchmarks/device/sampler_sweep.sh > /tmp/s200_sweep.log 2>&1 & B=$!
wait $A $B
tail -n 2 /tmp/soup_sweep.log /tmp/s200_sweep.log
for f in /tmp/soup/*.json /tmp/${RUN}_s200/*.json; do
  [ -f "$f" ] || continue
  echo "$(basename "$f") $(grep -E '"(num_matched|rmse|valid)"' "$f" | tr -d ' \n')"
done
