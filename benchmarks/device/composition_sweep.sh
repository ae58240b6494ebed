#!/usr/bin/env bash
# Composition-first de novo sampling with candidate composition models beside the default
# denoiser, sampling only (scored afterwards on the CPU machine, which has the references): for
# each CANDS entry NAME=FOLDER (a folder holding composition.json + composition.safetensors;
# "default" = the shipped one) and each composition temperature in TEMPS, 1,000 de novo samples
# (fast 50) at each seed in SEEDS, four processes at a time on the GPU; everything stops at
# $DEADLINE s and the samples come back as $OUT/$NAME.tgz. From the repository root, carrying
# .whl (smact not needed here):
#   CANDS="c0=default c1=cand/c1" TEMPS="0.9 1.0" SEEDS="0 1 2 3 4" NAME=compsweep \
#     DEADLINE=480 bash benchmarks/device/composition_sweep.sh
set -u
START=$(date +%s); NAME=${NAME:-compsweep}; D=/tmp/$NAME; mkdir -p "$D"
CANDS=${CANDS:?set CANDS, e.g. c0=default c1=cand/c1}; TEMPS=${TEMPS:-0.9}
SEEDS=${SEEDS:-0 1 2 3 4}; DEADLINE=${DEADLINE:-480}; P=${P:-4}
DEF=matgen/assets/models/default
source benchmarks/device/_env.sh
jobs=()
for c in $CANDS; do
  n=${c%%=*}; src=${c#*=}; ck=/tmp/ck_$n; mkdir -p "$ck"
  ln -sf "$PWD/$DEF/model.safetensors" "$PWD/$DEF/model.json" "$ck/"
  [ "$src" = default ] && src=$DEF
  cp "$src/composition.json" "$src/composition.safetensors" "$ck/"
  for t in $TEMPS; do for s in $SEEDS; do jobs+=("$n $t $s"); done; done
done
sample() {  # candidate temperature seed
  python3 -m matgen sample --checkpoint "/tmp/ck_$1" --num 1000 --batch-size 1000 \
    --denovo composition --composition-temperature "$2" --sampler fast --steps 50 --seed "$3" \
    --no-progress --out "$D/gen_$1_t$2_s$3.extxyz" > "$D/sample_$1_t$2_s$3.log" 2>&1
}
export -f sample; export D
printf '%s\n' "${jobs[@]}" | timeout $((DEADLINE - ($(date +%s) - START))) \
  xargs -P "$P" -L 1 bash -c 'sample $0 $1 $2'
echo "sampled ${#jobs[@]} jobs in $(($(date +%s) - START)) s; $(ls "$D"/*.extxyz | wc -l) files"
tar czf "${OUT:-/tmp}/$NAME.tgz" -C /tmp "$NAME"
