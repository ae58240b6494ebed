#!/usr/bin/env bash
# Bring run weights back from a device call: for each NAME, the newest complete checkpoint of
# $W/runs/NAME/run (last/, else the newest step_N/) as EMA weights in float16, tarred and split
# under the 16 MiB limit of a returned file into $W/export/NAME.tar.part-*. Here:
#   cat NAME.tar.part-* | tar x        (a checkpoint folder NAME/: model.safetensors + model.json)
# Used by ablate.sh once training ends and by oneshot.sh for a snapshot of a run still training;
# EXPORT=FOLDER puts the parts there instead of $W/export (finetune_sweep.sh's snapshots, kept
# apart from the final export a driver may be writing at the same time).
#   W=/tmp/abl bash benchmarks/device/export_weights.sh c8 c8_ema
set -u
W=${W:-/tmp/abl}; X=${EXPORT:-$W/export}; mkdir -p "$X" "$X.fp16"
for NAME in "$@"; do
  python3 -c "import sys, torch
from pathlib import Path
from matgen.generate import latest_checkpoint
from matgen.models import load_checkpoint, save_checkpoint
c = latest_checkpoint(Path(sys.argv[1]))
if c is None:
    sys.exit(f'{sys.argv[1]}: no complete checkpoint yet')
m, md = load_checkpoint(c)
save_checkpoint(sys.argv[2], m, md, storage_dtype=torch.float16)
print(f'exported {c} (step {md.get(\"step\")})')" "$W/runs/$NAME/run/checkpoints" "$X.fp16/$NAME" || continue
  rm -f "$X/$NAME.tar.part-"*
  tar cf - -C "$X.fp16" "$NAME" | split -b 15M - "$X/$NAME.tar.part-"
done
