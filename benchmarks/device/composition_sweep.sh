#!/usr/bin/env bash
# Composition-first de novo sampling with candidate composition models beside the default
# denoiser, sampling only (scored afterwards on the CPU machine, which has the references): for
# each CANDS entry NAME=SOURCE@T1,T2 and each of its composition temperatures, 1,000 de novo
# samples (fast 50) at each seed in SEEDS, P processes at a time on the GPU; everything stops at
# $DEADLINE s and the samples come back as $OUT/$NAME.tgz. SOURCE is a folder holding
# composition.json + composition.safetensors, "default" (the shipped one), or A+B+... (folders
# whose networks are averaged as one CompositionEnsemble, built here). From the repository
# root, carrying .whl (smact is not needed here):
#   CANDS="c0=default@0.9 c1=cand/c1@1.0,0.95 e2=cand/c1+cand/c2@1.0" SEEDS="0 1 2 3 4" \
#     NAME=compsweep DEADLINE=480 bash benchmarks/device/composition_sweep.sh
set -u
START=$(date +%s); NAME=${NAME:-compsweep}; D=/tmp/$NAME; mkdir -p "$D"
CANDS=${CANDS:?set CANDS, e.g. c0=default@0.9 c1=cand/c1@1.0}
SEEDS=${SEEDS:-0 1 2 3 4}; DEADLINE=${DEADLINE:-480}; P=${P:-4}
DEF=matgen/assets/models/default
source benchmarks/device/_env.sh
jobs=()
for c in $CANDS; do
  n=${c%%=*}; rest=${c#*=}; src=${rest%@*}; temps=${rest#*@}; ck=/tmp/ck_$n; mkdir -p "$ck"
  ln -sf "$PWD/$DEF/model.safetensors" "$PWD/$DEF/model.json" "$ck/"
  [ "$src" = default ] && src=$DEF
  if [[ "$src" == *+* ]]; then
    python3 - "$ck" ${src//+/ } <<'PY'
import sys
from matgen.models import CompositionEnsemble, load_composition_model, save_composition_model
ens = CompositionEnsemble.of([load_composition_model(p) for p in sys.argv[2:]])
save_composition_model(ens, sys.argv[1], {"members_from": sys.argv[2:]}, {"denovo": "composition"})
PY
  else
    cp "$src/composition.json" "$src/composition.safetensors" "$ck/"
  fi
  for t in ${temps//,/ }; do for s in $SEEDS; do jobs+=("$n $t $s"); done; done
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
