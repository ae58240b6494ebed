"""Load a script of ``benchmarks/`` (not a package) as a module, for its tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a denoiser small enough to build and save in a test (DenoiserConfig fields)
TINY = {"hidden": 16, "vectors": 4, "layers": 1, "num_radial": 8, "angular_channels": 4,
        "cutoff": 4.0}


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
