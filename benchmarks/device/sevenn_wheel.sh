#!/usr/bin/env bash
# A SevenNet wheel small enough for a device carry (the full one is 43 MB; the carry limit is
# 64 MiB with the tracked tree): the installed sevenn version, keeping only the named pretrained
# checkpoints (folder names under sevenn/pretrained_potentials, e.g. SevenNet_0__11Jul2024,
# SevenNet_l3i5) and dropping the D3 / LAMMPS sources and libraries, plus the two small wheels
# sevenn imports that the GPU image lacks (braceexpand, matscipy). From the repository root:
#   bash benchmarks/device/sevenn_wheel.sh .whl7 SevenNet_0__11Jul2024 [SevenNet_l3i5]
# then carry .whl7 (a later call on a machine that already ran _env.sh) and install it with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl7/*.whl
set -euo pipefail
mkdir -p "$1"; dest=$(cd "$1" && pwd); shift
[ $# -gt 0 ] || { echo "name at least one checkpoint folder to keep" >&2; exit 2; }
ver=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('sevenn'))")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$tmp/dl" "sevenn==$ver" braceexpand matscipy 2>&1 | grep -v '^WARNING: Location' || true
mkdir "$tmp/x" && (cd "$tmp/x" && unzip -q "$tmp"/dl/sevenn-*.whl)
for d in "$tmp"/x/sevenn/pretrained_potentials/*/; do
  keep=0; for k in "$@"; do [ "$(basename "$d")" = "$k" ] && keep=1; done
  [ $keep = 1 ] || rm -rf "$d"
done
rm -rf "$tmp"/x/sevenn/pair_e3gnn "$tmp"/x/sevenn/pair_d3*.so
(cd "$tmp/x" && zip -q -r "$dest/$(basename "$tmp"/dl/sevenn-*.whl)" .)
cp "$tmp"/dl/braceexpand-*.whl "$tmp"/dl/matscipy-*.whl "$dest"/
du -sh "$dest"; ls "$dest"
