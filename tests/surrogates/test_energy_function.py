"""energy_function / energies_per_atom: single-point MLIP energies by name (the MLIP of
``matgen sample --consensus K --select-by``)."""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Lattice, Structure

from matgen.surrogates import energy_function


def _rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_chgnet_single_points_rank_the_equilibrium_cell_below_a_squeezed_one():
    energies = energy_function("chgnet", "cpu")
    e = energies([_rocksalt(5.64), _rocksalt(4.6)])
    assert len(e) == 2 and all(math.isfinite(x) for x in e)
    assert e[0] < e[1] - 0.1  # eV/atom: 18% compression costs far more than that


def test_unknown_names_fail_before_anything_loads():
    with pytest.raises(ValueError, match="unknown MLIP 'mace'"):
        energy_function("mace")
