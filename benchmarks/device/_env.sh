# Set-up shared by the device drivers (sourced from the repository root): install the carried
# wheels (${WHL:-.whl}; skipped with NO_PIP=1) into /tmp/site, unpack the carried gzipped
# datasets and processed-data cache from .devdata (each where carried), and export the paths
# matgen reads. Sourced again below a driver that already did this (ENV_READY set), it only
# exports the paths.
if [ -z "${ENV_READY:-}" ]; then
[ -n "${NO_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site "${WHL:-.whl}"/*.whl > /tmp/pip.log 2>&1
# without the carried wheels nothing below can run (2026-12-06: a call that got a bare machine
# trained nothing for minutes): stop the sourcing driver here with one line
if [ -z "${NO_PIP:-}" ] && ! PYTHONPATH=/tmp/site python3 -c "import pydantic, pymatgen" 2>/dev/null
then
  echo "device set-up: matgen's dependencies did not install from ${WHL:-.whl} (carry .whl)" >&2
  exit 3
fi
if [ -d .devdata/datasets ]; then  # a sampling-only call may carry no datasets
  mkdir -p /tmp/datasets && cp -r .devdata/datasets/* /tmp/datasets/ && gunzip -f /tmp/datasets/mp20_reduced/*.gz
fi
if [ -d .devdata/cache ]; then mkdir -p /tmp/matgen_cache && cp -r .devdata/cache/* /tmp/matgen_cache/; fi
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export MATGEN_DATA_DIR=/tmp/datasets MATGEN_CACHE_DIR=/tmp/matgen_cache ENV_READY=1
