#!/usr/bin/env bash
# Carry a lineage's weights (a network other than the shipped default) to the device and keep what
# comes back, on the CPU machine, from the repository root. A lineage's fp16 weights live on main,
# in benchmarks/lineage/NAME/{model.json,model.safetensors} (30.9 MB): only main lands, so a git
# branch or an ignored folder does not outlast the checkout (the weights/e25_sub6 branch of
# 2026-12-06 was lost that way). A device call carries at most 64 MiB with the tree: the tree
# (~78.7 MB with the default's weights and one lineage), .whl and .devdata/datasets do not fit, so
# for the call the files no device driver reads are moved aside: every lineage but the one trained,
# large result files, and, for a lineage call, the default's weights (a lineage run starts from
# --init, and the sweep driver copies only the default's composition model).
#   bash benchmarks/device/lineage_carry.sh prep NAME   for a call that trains or scores lineage
#                                                       NAME (init: benchmarks/lineage/NAME)
#   bash benchmarks/device/lineage_carry.sh prep        for any other call (keeps the default)
#   bash benchmarks/device/lineage_carry.sh restore     put the moved files back
#   bash benchmarks/device/lineage_carry.sh store NAME DIR [OLD]
#       NAME.tar.part-* of DIR (what finetune_sweep.sh FETCH brings back) into
#       benchmarks/lineage/NAME, staged for a commit; OLD, the stage it continues, leaves the tree
#       (one lineage on main at a time; git history keeps it)
set -euo pipefail
ASIDE=${ASIDE:-/tmp/lineage_aside}
LIMIT=67108864
LINEAGE=benchmarks/lineage
DEFAULT=matgen/assets/models/default/model.safetensors
RESULTS="benchmarks/results/generative_campaign_cpu60.json
benchmarks/results/generative_campaign_h100_compfirst.json
benchmarks/results/generative_campaign_h200_60.json
benchmarks/results/generative_campaign_h100_hfix.json
docs/lab_report.png
benchmarks/results/l32_csp_test_cpu_fast200_q1.extxyz.gz
benchmarks/results/l32_csp_test_cpu_fast200_q2.extxyz.gz
benchmarks/results/l32_csp_test_cpu_fast200_q3.extxyz.gz
benchmarks/results/l32_csp_test_cpu_fast200_q4.extxyz.gz"

die() { echo "lineage_carry: $*" >&2; exit 2; }

# the tracked files to move aside for a call on lineage $1 (none: a plain call)
aside_list() {
  echo "$RESULTS"
  [ -z "${1:-}" ] || echo "$DEFAULT"
  git ls-files -- "$LINEAGE" | { grep -v "^$LINEAGE/${1:-/}/" || true; }
}

prep() {
  local name=${1:-} dir=""
  if [ -n "$name" ]; then
    dir=$LINEAGE/$name
    git ls-files --error-unmatch "$dir/model.safetensors" "$dir/model.json" > /dev/null 2>&1 \
      || die "no committed $dir/model.{json,safetensors}"
  fi
  mkdir -p "$ASIDE"
  aside_list "$name" | while read -r f; do
    if [ -f "$f" ]; then mkdir -p "$ASIDE/$(dirname "$f")" && mv "$f" "$ASIDE/$f"; fi
  done
  local tree extra total
  tree=$( (git ls-files -z | xargs -0 stat -c %s -- 2> /dev/null || true) \
    | awk '{s += $1} END {print s + 0}')  # the moved files are gone from the tree
  extra=$(du -sb .whl .devdata/datasets | awk '{s += $1} END {print s}')
  total=$((tree + extra))
  echo "carry: tree $tree + .whl, .devdata/datasets $extra = $total bytes (limit $LIMIT)"
  echo "carry: [\".whl\", \".devdata/datasets\"]${dir:+; init: $dir}; afterwards: lineage_carry.sh restore"
  # 2026-12-07: a CPU sampling of benchmarks/lineage/l31 started while a plain prep had it aside
  # failed at once, unseen for 40 minutes
  echo "carry: $(find "$ASIDE" -type f | wc -l) files are in $ASIDE until restore; a job on this" \
    "machine that reads one of them fails meanwhile"
  [ "$total" -lt "$LIMIT" ] \
    || die "over the limit by $((total - LIMIT)) bytes (restore puts the files back)"
}

restore() {
  if [ -d "$ASIDE" ]; then
    (cd "$ASIDE" && find . -type f -printf '%P\n') | while read -r f; do
      mkdir -p "$(dirname "$f")" && mv "$ASIDE/$f" "$f"
    done
  fi
  local missing
  missing=$(git ls-files --deleted)
  [ -z "$missing" ] || die "still missing (git checkout -- them if $ASIDE is gone): $missing"
  echo "restored"
}

store() {
  local name=${1:?usage: store NAME DIR [OLD]} src=${2:?usage: store NAME DIR [OLD]}
  local old=${3:-} tmp
  ls "$src/$name".tar.part-* > /dev/null 2>&1 || die "no $src/$name.tar.part-*"
  [ -z "$old" ] || [ "$old" != "$name" ] || die "OLD is NAME ($name)"
  [ -z "$old" ] || git ls-files --error-unmatch "$LINEAGE/$old/model.safetensors" \
    > /dev/null 2>&1 || die "no committed $LINEAGE/$old to replace"
  tmp=$(mktemp -d)
  cat "$src/$name".tar.part-* | tar x -C "$tmp"
  [ -f "$tmp/$name/model.safetensors" ] && [ -f "$tmp/$name/model.json" ] \
    || { rm -rf "$tmp"; die "the parts hold no $name/model.{json,safetensors}"; }
  mkdir -p "$LINEAGE" && rm -rf "${LINEAGE:?}/$name"
  mkdir "$LINEAGE/$name"
  mv "$tmp/$name/model.json" "$tmp/$name/model.safetensors" "$LINEAGE/$name/" && rm -rf "$tmp"
  git add -- "$LINEAGE/$name/model.json" "$LINEAGE/$name/model.safetensors"
  [ -z "$old" ] || git rm -q -r -- "$LINEAGE/$old"
  echo "staged $LINEAGE/$name${old:+ (and the removal of $LINEAGE/$old)}: commit it now"
}

case "${1:-}" in
  prep) shift; prep "$@" ;;
  restore) restore ;;
  store) shift; store "$@" ;;
  *) die "usage: lineage_carry.sh prep [NAME] | restore | store NAME DIR [OLD]" ;;
esac
