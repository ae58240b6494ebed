#!/usr/bin/env bash
# Build the two ignored folders a device run carries (see ablate.sh / eval_parallel.sh), on the
# CPU machine, from the repository root:
#   bash benchmarks/device/prepare_carry.sh      (needs .venv, ../shared/datasets, the pip registry)
# .whl: the Python 3.12 wheels the GPU image lacks (../shared/tools/device-wheels.sh) plus smact
# (composition validity), without chgnet (13.7 MB: the carry limit is 64 MiB with the tree; add
# it back with WITH_CHGNET=1 for runs that relax, then leave .devdata out).
# The tree holds a lineage's weights too (benchmarks/lineage): lineage_carry.sh prep makes room.
# .devdata: gzipped mp20_reduced and the processed-dataset cache of train/val, built with this
# checkout's crystal code (the cache key hashes it). Prints the carry total. hull_refs stay out
# (no device driver needs them; with them the carry was 66.9 MB and refused).
set -euo pipefail
DATA=${MATGEN_DATA_DIR:-$(cd .. && pwd)/shared/datasets}
bash ../shared/tools/device-wheels.sh .whl
SMACT=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('smact'))")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl "smact==$SMACT" 2>&1 | grep -v '^WARNING: Location' || true
[ -n "${WITH_CHGNET:-}" ] || rm -f .whl/chgnet-*.whl .whl/nvidia_ml_py3-*.whl
mkdir -p .devdata/datasets/mp20_reduced .devdata/cache
for s in train val test; do gzip -c "$DATA/mp20_reduced/$s.csv" > ".devdata/datasets/mp20_reduced/$s.csv.gz"; done
TMPC=$(mktemp -d)
MATGEN_CACHE_DIR=$TMPC MATGEN_DATA_DIR=$DATA .venv/bin/python -c "
from matgen.data import load_dataset
for s in ('train', 'val'):
    load_dataset('mp20', split=s, max_atoms=20, reduce='niggli')"
rm -rf .devdata/cache/processed && cp -r "$TMPC/processed" .devdata/cache/ && rm -rf "$TMPC"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
extra=$(du -sb .whl .devdata | awk '{s += $1} END {print s}')
echo "carry: tracked tree $tree + .whl/.devdata $extra = $((tree + extra)) bytes (limit 67108864; 65,197,925 went through on 2026-12-04)"
echo "carry: with a lineage's weights on main (benchmarks/lineage) the tree is ~78 MB: before a"
echo "call, benchmarks/device/lineage_carry.sh prep [NAME] moves aside what it does not read"
