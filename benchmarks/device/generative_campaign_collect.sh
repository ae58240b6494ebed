#!/usr/bin/env bash
# Copy what the GPU run of benchmarks/device/generative_campaign.sh has so far to $OUT: the
# results file, driver log, GPU utilisation, and the logs + campaign stores (state.db only: the
# fine-tuned generator versions and scorer states are too large to come back); prints the labels
# each arm-seed has so far.
W=${W:-/tmp/gc}
cat "$W/driver.log"; grep -h "hits," "$W"/logs/*.log; ls "$W"
python3 - "$W" <<'PY'
import sqlite3, sys, pathlib
for db in sorted(pathlib.Path(sys.argv[1]).glob("work/*_s*/state.db")):
    c = sqlite3.connect(db)
    n = [c.execute(f"select count(*) from {t}").fetchone()[0] for t in ("rounds", "submissions")]
    print(db.parent.name, "rounds", n[0], "labels", n[1])
PY
cp "$W/gc.json" "$W/driver.log" "$W/gpu_util.csv" "${OUT:?}/" 2>/dev/null
tar czf "$OUT/logs.tar.gz" -C "$W" logs $(cd "$W" && ls work/*_s*/state.db 2>/dev/null) 2>/dev/null
ls -la "$OUT"
