#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the default (fast) test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export MATGEN_DATA_DIR="${MATGEN_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
exec .venv/bin/python -m pytest -q --timeout=900 "$@"
