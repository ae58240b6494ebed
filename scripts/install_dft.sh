#!/usr/bin/env bash
# Install the optional DFT oracle (GPAW) into .venv: the `dft` extra of pyproject.toml.
#
#   bash scripts/install_dft.sh
#
# 1. Debian packages GPAW's C extension builds against: libxc (exchange-correlation functionals),
#    OpenBLAS (provides libblas.so), FFTW 3 (plane-wave FFTs) and a C compiler.
# 2. pip builds gpaw from source against them (serial build: no MPI, one process per
#    calculation) and installs gpaw-data, the wheel that carries the PAW setups, so nothing is
#    downloaded at run time.
# The default install (scripts/setup.sh) is unchanged; this only adds packages. Idempotent: a
# second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
PY=.venv/bin/python

if "$PY" -c "import gpaw, gpaw_data; from gpaw import GPAW; import _gpaw" >/dev/null 2>&1; then
  echo "install_dft: gpaw already installed ($("$PY" -c 'import gpaw; print(gpaw.__version__)'))"
  exit 0
fi

APT_PACKAGES=(build-essential g++ pkg-config libxc-dev libopenblas-dev libfftw3-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_dft: need root or sudo for apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# GPAW reads its build options from the file named by GPAW_CONFIG (a file given there replaces
# setup.py's default library list): libxc, BLAS (OpenBLAS's libblas.so) and FFTW 3, compiled as
# C++ by g++ (GPAW's C sources are C++ now; plain gcc compiles them as C and fails), no MPI
# (serial: one core per calculation).
cfg="$(mktemp --suffix=.py)"
trap 'rm -f "$cfg"' EXIT
cat >"$cfg" <<'EOF'
compiler = 'g++'
libraries = ['xc', 'blas', 'fftw3']
fftw = True
mpi = False
EOF
# The requirements are the `dft` extra of pyproject.toml (one place for the versions); installed
# on their own so that matgen's editable install is left alone.
mapfile -t reqs < <("$PY" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dft']))")
# --no-build-isolation: compile against the numpy already in .venv (the one it will run with)
"$PY" -m pip install -q "pybind11>=2.6.2" "setuptools>=77" wheel
GPAW_CONFIG="$cfg" "$PY" -m pip install --no-build-isolation "${reqs[@]}"
"$PY" -c "import gpaw, gpaw.fftw as f; from gpaw.mpi import world; assert world.size == 1; print('install_dft: gpaw', gpaw.__version__, '(FFTW)' if f.have_fftw() else '(numpy FFT)')"
