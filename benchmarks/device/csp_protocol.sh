#!/usr/bin/env bash
# The ablation rounds' CSP protocol for one checkpoint already in the working tree, without
# training (ablate.sh's val and test stages): fast sampler, 50 steps; all 1,000 val rows at seeds 0
# and 1 (pooled: the selection number) and the whole public test split at seed 0 (the shipping
# number, same seed and batch as ablate.sh's test stage), sampled at once and scored on the device.
# Results land in /tmp/cspp and come back as $OUT/cspp.tgz. From the repository root, carrying
# .whl and .devdata/datasets (55 s on one H200, round 17, 2026-12-04):
#   CK=path/to/checkpoint bash benchmarks/device/csp_protocol.sh
set -u
D=/tmp/cspp; mkdir -p "$D"; CK=${CK:-matgen/assets/models/default}; START=$(date +%s)
source benchmarks/device/_env.sh
V=/tmp/datasets/mp20_reduced/val.csv; T=/tmp/datasets/mp20_reduced/test.csv
S="python3 -m matgen sample --checkpoint $CK --task csp --num 1 --sampler fast --steps 50 --no-progress"
for J in val:0 val:1 test:0; do
  R=${J%%:*}; SEED=${J##*:}; REF=$V; [ "$R" = test ] && REF=$T
  ( timeout 200 $S --compositions-from "$REF" --batch-size 1200 --seed "$SEED" --out "$D/${R}_s$SEED.extxyz" \
      > "$D/sample_${R}_s$SEED.log" 2>&1 \
    && timeout 300 python3 -m matgen evaluate --task csp --generated "$D/${R}_s$SEED.extxyz" \
      --reference "$REF" --workers 5 --out "$D/${R}_s$SEED.json" > "$D/eval_${R}_s$SEED.log" 2>&1 ) &
done
wait
python3 - "$D" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from ablation import pooled  # the rounds' own pooling of validation seeds
d = Path(sys.argv[1]); out = {}
for f in sorted(d.glob("*.json")):
    m = json.loads(f.read_text())
    out[f.stem] = {k: m.get(k) for k in ("match_rate", "rmse", "num_matched", "num_references")}
v = [out[k] for k in ("val_s0", "val_s1") if k in out]
if len(v) == 2:
    out["val_pooled"] = pooled(v)
print(json.dumps(out, indent=1)); (d / "summary.json").write_text(json.dumps(out, indent=1))
EOF
echo "done in $(($(date +%s) - START)) s"
[ -n "${OUT:-}" ] && tar czf "$OUT/cspp.tgz" -C "$D" --exclude '*.extxyz' .
