"""matgen.testing: checkers any model can be run through (see :mod:`matgen.testing.symmetry`).

Public API:
    check_symmetries: max error per symmetry (rotation, permutation, translation, basis change).
    random_crystals, random_rotation, random_unimodular: helpers for such tests.
    training_throughput, sampling_throughput: speed measurements for benchmarks/.
"""

from __future__ import annotations

from matgen.testing.symmetry import (
    check_symmetries,
    random_crystals,
    random_rotation,
    random_unimodular,
)
from matgen.testing.throughput import sampling_throughput, training_throughput

__all__ = [
    "check_symmetries",
    "random_crystals",
    "random_rotation",
    "random_unimodular",
    "sampling_throughput",
    "training_throughput",
]
