"""matgen.testing: checkers any model can be run through (see :mod:`matgen.testing.symmetry`).

Public API:
    check_symmetries: max error per symmetry (rotation, permutation, translation, basis change).
    random_crystals, random_rotation, random_unimodular: helpers for such tests.
"""

from __future__ import annotations

from matgen.testing.symmetry import (
    check_symmetries,
    random_crystals,
    random_rotation,
    random_unimodular,
)

__all__ = ["check_symmetries", "random_crystals", "random_rotation", "random_unimodular"]
