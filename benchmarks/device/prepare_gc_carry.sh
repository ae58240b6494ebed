#!/usr/bin/env bash
# Build .gc/, the carry of the generative-campaign benchmark's GPU run (issue 22,
# benchmarks/device/generative_campaign.sh), on the CPU machine from the repository root:
#   bash benchmarks/device/prepare_gc_carry.sh
# needs .whl (benchmarks/device/prepare_carry.sh), .venv, ../shared/datasets and the generator the
# CPU seeds are pinned to in runs/models/34fe27b86562 (git show 3e87fbd:matgen/assets/models/default).
# .gc holds: the wheels + chgnet 0.4.2 with only its default 0.3.0 weights (5.0 MB instead of
# 13.7) + nvidia-ml-py3 (chgnet imports nvidia_smi) + pure-Python SQLAlchemy (the campaign
# store); mp20_reduced and the hull-reference compositions xz-compressed; the pinned generator.
# The 64 MiB carry holds it only without the tracked default model and fingerprint table, which
# that run does not read: move both aside for the call and back after it (printed below).
# MODEL=tree: no pinned generator in .gc; the run samples the tracked default model (with its
# composition model). .gc + the whole tree is then over the limit, so generative_campaign.sh runs
# in two calls: STAGE=setup with .gc and the four files printed below aside, STAGE=run right after
# it with them back and no .gc (the setup left everything in /tmp of the warm machine).
set -euo pipefail
DATA=${MATGEN_DATA_DIR:-$(cd .. && pwd)/shared/datasets}
MODEL=${MODEL:-runs/models/34fe27b86562}
grep -qx "/.gc/" "$(git rev-parse --git-path info/exclude)" 2>/dev/null \
  || echo "/.gc/" >> "$(git rev-parse --git-path info/exclude)"
rm -rf .gc && mkdir -p .gc/whl .gc/data/mp20_reduced .gc/data/hull_refs .gc/model /tmp/gc_wheels
cp .whl/*.whl .gc/whl/ && rm -f .gc/whl/chgnet-*.whl
# slim WHEEL REGEX: WHEEL into .gc/whl without the files whose paths match the grep REGEX (BRE),
# its RECORD rewritten to match
slim() {
  local X; X=$(mktemp -d)
  (cd "$X" && unzip -q "$1" && unzip -Z1 "$1" | grep "$2" | xargs rm -rf \
    && grep -v "$2" ./*.dist-info/RECORD > R && mv R ./*.dist-info/RECORD \
    && zip -q -9 -r "$OLDPWD/.gc/whl/$(basename "$1")" .)
  rm -rf "$X"
}
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 "$@" \
  -d /tmp/gc_wheels 2>&1 | grep -v '^WARNING: Location' || true; }
dl --implementation cp --platform manylinux2014_x86_64 chgnet==0.4.2
dl --implementation py --platform any "sqlalchemy==$(.venv/bin/python -c 'import sqlalchemy as s; print(s.__version__)')"
ls /tmp/gc_wheels/nvidia_ml_py3-*.whl > /dev/null 2>&1 \
  || python3 -m pip wheel -q --no-deps nvidia-ml-py3 -w /tmp/gc_wheels 2>&1 | grep -v '^WARNING' || true
cp /tmp/gc_wheels/sqlalchemy-*.whl /tmp/gc_wheels/nvidia_ml_py3-*.whl .gc/whl/
# pymatgen's phase_diagram imports plotly at module level (the image lacks it; without it every
# hull distance failed, 2026-12-04): plotly without its JavaScript bundles, and narwhals
dl --implementation py --platform any "plotly==$(.venv/bin/python -c 'import plotly; print(plotly.__version__)')" \
  "narwhals==$(.venv/bin/python -c 'import narwhals; print(narwhals.__version__)')"
cp /tmp/gc_wheels/narwhals-*.whl .gc/whl/
slim "$(ls /tmp/gc_wheels/plotly-*.whl)" 'package_data/[a-z.]*\.js\(,\|$\)\|labextension/\|plotly-[0-9.]*\.data/'
slim "$(ls /tmp/gc_wheels/chgnet-0.4.2-*.whl)" 'pretrained/0\.2\.0/\|pretrained/r2scan/'
for s in train val test; do xz -9 -c "$DATA/mp20_reduced/$s.csv" > .gc/data/mp20_reduced/$s.csv.xz; done
cp "$DATA"/hull_refs/*.json.gz .gc/data/hull_refs/
zcat "$DATA/hull_refs/mp_e_form_compositions.csv.gz" | xz -9e > .gc/data/hull_refs/mp_e_form_compositions.csv.xz
aside="matgen/evaluation/_data/fp_mp20_reduced_test.npz benchmarks/results/generative_campaign_cpu60.json"
if [ "$MODEL" = tree ]; then
  aside="matgen/assets/models/default/model.safetensors matgen/assets/models/default/composition.safetensors $aside"
else
  cp "$MODEL"/model.json .gc/model/ && xz -9 -T2 -c "$MODEL"/model.safetensors > .gc/model/model.safetensors.xz
  aside="matgen/assets/models/default/model.safetensors $aside"
fi
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
out=$(du -cb $aside | tail -1 | cut -f1)
echo "carry: tracked tree $tree - aside $out + .gc $(du -sb .gc | cut -f1) = $((tree - out + $(du -sb .gc | cut -f1))) bytes (limit 67108864; 66,480,116 went through on 2026-12-04)"
echo "before the call: for f in $aside; do mv \$f /tmp/\$(basename \$f); done"
echo "after it:        git checkout -- $aside   (or move them back)"
