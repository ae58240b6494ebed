#!/usr/bin/env bash
# Sweep one sampling option of a checkpoint, sampling only, in one call: for each value in
# $VALUES of $OPT (a `matgen sample` flag), CSP on all 1,000 mp20_reduced val rows (fast 50 steps,
# seeds 0 and 1), 1,000 de novo samples (fast 50, seeds 0, 1, 2) scored against val without COV
# (the image lacks matminer), and with TEST=1 also CSP on the whole public test split (seed 0,
# batch 1,200: the rounds' shipping protocol, as csp_protocol.sh) and de novo seed 0 scored
# against test. Samplings run four at a time on the GPU, then the scorings four at a time (four
# workers each); the samplings stop at $SAMPLE_S s (default DEADLINE / 3) and everything at
# $DEADLINE s after the start so the results come back
# ($OUT/$NAME.tgz, samples included). Write the rule the numbers are judged by down before the
# call. CSP=0 leaves out the CSP jobs (an option that acts on de novo sampling only); GEN_SEEDS
# sets the de novo seeds (default "0 1 2"; none: no de novo), P the jobs at a time (default 4), EXTRA more sampling
# flags held fixed (e.g. EXTRA="--flow-slope 20" with OPT=--steps; a flag given twice, the last
# wins). TRAIN_REF=CSV also samples CSP at seed 0 on those training rows (benchmarks/train_rows.py)
# and scores it against them: how much of the training set the model recalls, next to val.
# From the repository root, carrying .whl and .devdata:
#   OPT=--flow-slope VALUES="0 2.5 5 10" NAME=slope DEADLINE=480 bash benchmarks/device/sampler_sweep.sh
set -u
START=$(date +%s); NAME=${NAME:-sweep}; D=/tmp/$NAME; mkdir -p "$D"
OPT=${OPT:?set OPT, e.g. --flow-slope}; VALUES=${VALUES:?set VALUES}
DEADLINE=${DEADLINE:-480}; CK=${CK:-matgen/assets/models/default}; TEST=${TEST:-0}
SAMPLE_S=${SAMPLE_S:-$((DEADLINE / 3))}
CSP=${CSP:-1}; GEN_SEEDS=${GEN_SEEDS:-0 1 2}; P=${P:-4}; EXTRA=${EXTRA:-}; R=${TRAIN_REF:-}
[ "$GEN_SEEDS" = none ] && GEN_SEEDS=" "  # no de novo (a blank works too)
source benchmarks/device/_env.sh
V=/tmp/datasets/mp20_reduced/val.csv; T=/tmp/datasets/mp20_reduced/test.csv
jobs=(); scores=()
for s in $VALUES; do
  if [ "$CSP" = 1 ]; then for seed in 0 1; do jobs+=("csp $s $seed val"); done; fi
  for seed in $GEN_SEEDS; do jobs+=("gen $s $seed val"); done
  [ -n "$R" ] && jobs+=("csp $s 0 train")
  if [ "$TEST" = 1 ]; then
    [ "$CSP" = 1 ] && jobs+=("csp $s 0 test")
    scores+=("gen $s 0 test")
  fi
done
sample() {  # task value seed split
  local ref=$V extra=(--num 1000 --batch-size 1000); [ "$4" = test ] && ref=$T
  [ "$4" = train ] && ref=$R
  [ "$1" = csp ] && extra=(--task csp --num 1 --compositions-from "$ref" --batch-size 1200)
  python3 -m matgen sample --checkpoint "$CK" "${extra[@]}" --sampler fast --steps 50 \
    $EXTRA "$OPT" "$2" --seed "$3" --no-progress --out "$D/$1_$4_k$2_s$3.extxyz" \
    > "$D/sample_$1_$4_k$2_s$3.log" 2>&1
}
score() {  # task value seed split (de novo samples are drawn once, under the val name)
  local ref=$V extra=() gen="$D/$1_$4_k$2_s$3.extxyz"; [ "$4" = test ] && ref=$T
  [ "$4" = train ] && ref=$R
  [ "$1" = gen ] && extra=(--no-coverage) && gen="$D/gen_val_k$2_s$3.extxyz"
  python3 -m matgen evaluate --task "$1" --generated "$gen" --reference "$ref" \
    "${extra[@]}" --workers 4 --out "$D/$1_$4_k$2_s$3.json" > "$D/eval_$1_$4_k$2_s$3.log" 2>&1
}
export -f sample score; export D V T R CK OPT EXTRA
printf '%s\n' "${jobs[@]}" | timeout "$SAMPLE_S" xargs -P "$P" -L 1 bash -c 'sample $0 $1 $2 $3'
echo "sampled in $(($(date +%s) - START)) s"
left=$((DEADLINE - ($(date +%s) - START)))
printf '%s\n' "${jobs[@]}" "${scores[@]}" | timeout "$left" xargs -P "$P" -L 1 bash -c 'score $0 $1 $2 $3'
echo "sampled + scored in $(($(date +%s) - START)) s"; ls "$D" | grep -c json
tar czf "${OUT:-/tmp}/$NAME.tgz" -C /tmp "$NAME"
