#!/usr/bin/env bash
# Public-test CSP of one checkpoint on the 2-core CPU, in row parts, for a sampler too slow to
# cover the split in one session (round33_rule.txt, amendment 1: fast 200 takes ~3 h of both
# cores). Each part is sampled by one 1-thread process at seed 0 and written to $OUT; a part
# whose .partial file is there resumes from it (matgen sample keeps finished batches), so $OUT
# should be a folder that outlasts the session (runs/ is ignored by git). From the repository
# root, with MATGEN_DATA_DIR set:
#   CK=/tmp/l32ship200 OUT=runs/cpu200 bash benchmarks/csp_cpu_parts.sh split     (4 parts)
#   CK=/tmp/l32ship200 OUT=runs/cpu200 bash benchmarks/csp_cpu_parts.sh sample 3 4 (side by side)
#   CK=/tmp/l32ship200 OUT=runs/cpu200 bash benchmarks/csp_cpu_parts.sh score     (when all are)
set -euo pipefail
CK=${CK:?set CK, the checkpoint folder}; OUT=${OUT:?set OUT}; PARTS=${PARTS:-4}
TEST=${MATGEN_DATA_DIR:?set MATGEN_DATA_DIR}/mp20_reduced/test.csv
PY=${PY:-.venv/bin/python}; mkdir -p "$OUT"
case "${1:-}" in
  split)  # rows k*n/PARTS .. (k+1)*n/PARTS, rounded up as 1131 / 1131 / 1131 / 1130 for 4
    "$PY" - "$TEST" "$OUT" "$PARTS" <<'PYEOF'
import csv, math, sys
src, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, newline="") as f:
    rows = list(csv.reader(f))
head, body = rows[0], rows[1:]
size = math.ceil(len(body) / parts)
for k in range(parts):
    with open(f"{out}/test_q{k + 1}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(body[k * size:(k + 1) * size])
    print(f"{out}/test_q{k + 1}.csv: rows {k * size}-{min(len(body), (k + 1) * size) - 1}")
PYEOF
    ;;
  sample)
    shift
    for q in "$@"; do
      OMP_NUM_THREADS=1 "$PY" -m matgen sample --task csp --checkpoint "$CK" --num 1 \
        --compositions-from "$OUT/test_q$q.csv" --seed 0 --no-progress --device cpu \
        --out "$OUT/q$q.extxyz" > "$OUT/q$q.log" 2>&1 &
    done
    wait
    ;;
  score)
    parts=(); for k in $(seq 1 "$PARTS"); do parts+=("$OUT/q$k.extxyz"); done
    cat "${parts[@]}" > "$OUT/test_all.extxyz"
    "$PY" -m matgen evaluate --task csp --generated "$OUT/test_all.extxyz" --reference "$TEST" \
      --workers 2 --out "$OUT/test_all.json"
    ;;
  *) echo "usage: csp_cpu_parts.sh split | sample PART... | score" >&2; exit 2 ;;
esac
