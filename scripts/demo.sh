#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then run the demo discovery campaign on the
# shipped default model and export the lab candidate list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MATGEN_DATA_DIR="${MATGEN_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
CONFIG=${CONFIG:-configs/campaigns/demo.yaml}
.venv/bin/matgen campaign run --config "$CONFIG"
.venv/bin/matgen campaign status --config "$CONFIG"
.venv/bin/matgen campaign export --config "$CONFIG" --out runs/demo/lab_export
