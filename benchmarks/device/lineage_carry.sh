#!/usr/bin/env bash
# Carry a lineage's weights (a network other than the shipped default) to the device and keep what
# comes back, on the CPU machine, from the repository root. A device call carries at most 64 MiB:
# the tracked tree (~47.7 MB, 30.9 of them the default's weights), .whl and .devdata/datasets leave
# no room for a second 30.9 MB checkpoint, so the default's weights and the largest result files no
# device driver reads are moved aside for the call, and the lineage's weights travel as an ignored
# folder (carry runs/device/NAME). The weights live on git branches weights/NAME, off main's tree
# (every device call copies the tree), so they outlast this checkout.
#   bash benchmarks/device/lineage_carry.sh prep NAME     runs/device/NAME from branch weights/NAME
#                                                         (if missing); move the files aside;
#                                                         print the carry total
#   bash benchmarks/device/lineage_carry.sh restore       put the moved files back
#   bash benchmarks/device/lineage_carry.sh store NAME DIR  NAME.tar.part-* of DIR (what
#                                                         finetune_sweep.sh FETCH brings back) into
#                                                         runs/device/NAME and onto branch
#                                                         weights/NAME (a new commit on it)
set -euo pipefail
ASIDE=${ASIDE:-/tmp/lineage_aside}
LIMIT=67108864
# not read on the device: the default denoiser (a lineage run starts from --init, and the sweep
# driver copies only the default's composition model) and result files
MOVE="matgen/assets/models/default/model.safetensors
benchmarks/results/generative_campaign_cpu60.json
benchmarks/results/generative_campaign_h100_compfirst.json
benchmarks/results/generative_campaign_h200_60.json
benchmarks/results/generative_campaign_h100_hfix.json
docs/lab_report.png"

die() { echo "lineage_carry: $*" >&2; exit 2; }

prep() {
  local name=${1:?usage: prep NAME} dir
  dir=runs/device/$1
  if [ ! -f "$dir/model.safetensors" ]; then
    git rev-parse -q --verify "weights/$name" > /dev/null \
      || die "no $dir and no branch weights/$name"
    mkdir -p runs/device && git archive "weights/$name" | tar x -C runs/device
  fi
  [ -f "$dir/model.json" ] || die "$dir has no model.json"
  mkdir -p "$ASIDE"
  while read -r f; do
    if [ -f "$f" ]; then mkdir -p "$ASIDE/$(dirname "$f")" && mv "$f" "$ASIDE/$f"; fi
  done <<< "$MOVE"
  local tree extra total
  tree=$( (git ls-files -z | xargs -0 stat -c %s -- 2> /dev/null || true) \
    | awk '{s += $1} END {print s + 0}')  # the moved files are gone from the tree
  extra=$(du -sb .whl .devdata/datasets "$dir" | awk '{s += $1} END {print s}')
  total=$((tree + extra))
  echo "carry: tree $tree + .whl, .devdata/datasets, $dir $extra = $total bytes (limit $LIMIT)"
  echo "carry: [\".whl\", \".devdata/datasets\", \"$dir\"]; afterwards: lineage_carry.sh restore"
  [ "$total" -lt "$LIMIT" ] \
    || die "over the limit by $((total - LIMIT)) bytes (restore puts the files back)"
}

restore() {
  while read -r f; do
    if [ -f "$ASIDE/$f" ]; then mv "$ASIDE/$f" "$f"; fi
  done <<< "$MOVE"
  local missing
  missing=$(git ls-files --deleted)
  [ -z "$missing" ] || die "still missing (git checkout -- them if $ASIDE is gone): $missing"
  echo "restored"
}

store() {
  local name=${1:?usage: store NAME DIR} src=${2:?usage: store NAME DIR}
  local tmp idx b1 b2 tree parent commit
  ls "$src/$name".tar.part-* > /dev/null 2>&1 || die "no $src/$name.tar.part-*"
  tmp=$(mktemp -d)
  cat "$src/$name".tar.part-* | tar x -C "$tmp"
  [ -f "$tmp/$name/model.safetensors" ] && [ -f "$tmp/$name/model.json" ] \
    || die "the parts hold no $name/model.{json,safetensors}"
  mkdir -p runs/device && rm -rf "runs/device/$name"
  mv "$tmp/$name" runs/device/ && rm -rf "$tmp"
  idx=$(mktemp) && rm -f "$idx"
  b1=$(git hash-object -w "runs/device/$name/model.json")
  b2=$(git hash-object -w "runs/device/$name/model.safetensors")
  GIT_INDEX_FILE=$idx git update-index --add --cacheinfo "100644,$b1,$name/model.json" \
    --cacheinfo "100644,$b2,$name/model.safetensors"
  tree=$(GIT_INDEX_FILE=$idx git write-tree) && rm -f "$idx"
  parent=$(git rev-parse -q --verify "weights/$name" || true)
  commit=$(echo "weights of $name ($(date -u +%Y-%m-%dT%H:%MZ)), from $src" \
    | git commit-tree "$tree" ${parent:+-p "$parent"})
  git branch -f "weights/$name" "$commit" > /dev/null
  echo "stored runs/device/$name and weights/$name at ${commit:0:12}"
}

case "${1:-}" in
  prep) shift; prep "$@" ;;
  restore) restore ;;
  store) shift; store "$@" ;;
  *) die "usage: lineage_carry.sh prep NAME | restore | store NAME DIR" ;;
esac
