"""The per-crystal checks on arrays, and the periodic minimum distance."""

from __future__ import annotations

import numpy as np
import pytest

from matgen.crystal import ValidationOptions, check_crystal, check_labels, min_image_distance


def _arrays(s):
    return np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix


def test_fixtures_are_valid(tiny_structures):
    for s in tiny_structures:
        assert check_crystal(*_arrays(s)) is None


def test_min_image_distance_matches_pymatgen(tiny_structures):
    for s in tiny_structures:
        d, _, _ = min_image_distance(s.frac_coords, s.lattice.matrix)
        dm = s.distance_matrix + np.diag([np.inf] * len(s))
        ref = min(dm.min(), min(s.lattice.abc))  # one-atom cell: its own image
        assert d == pytest.approx(ref, abs=1e-9)


def test_min_image_distance_in_a_skewed_cell():
    # a very sheared cell: the raw basis vectors are long, the lattice's shortest vector short
    lat = np.array([[3.0, 0, 0], [29.0, 3.0, 0], [0, 0, 3.0]])
    frac = np.array([[0.0, 0, 0]])
    d, i, j = min_image_distance(frac, lat)
    assert d == pytest.approx(3.0) and i == j == 0
    # two atoms at a Cartesian distance of 0.3 Å that only shows through an image
    frac2 = np.array([[0.0, 0, 0], [0.0, 0.0, 0.0]])
    frac2[1] = np.linalg.solve(lat.T, np.array([0.3, 0, 0]) + lat[1] * 1.0) % 1.0
    d, _, _ = min_image_distance(frac2, lat)
    assert d == pytest.approx(0.3, abs=1e-9)
    z = np.array([11, 17])
    assert "0.300 Å apart" in check_crystal(z, frac2, lat)


def test_reasons(one_atom, rock_salt):
    z, f, lat = _arrays(rock_salt)
    assert "max_atoms=4" in check_crystal(z, f, lat, ValidationOptions(max_atoms=4))
    bad = f.copy()
    bad[0, 0] = np.nan
    assert check_crystal(z, bad, lat) == "NaN or inf in the atomic coordinates"
    assert check_crystal(z, f, np.full((3, 3), np.inf)) == "NaN or inf in the lattice"
    assert "unsupported element Am" in check_crystal(np.array([95] * 8), f, lat)
    assert "dummy" in check_crystal(np.array([0] * 8), f, lat)
    flipped = lat.copy()
    flipped[2] *= -1
    assert "negative cell volume" in check_crystal(z, f, flipped)
    assert "zero cell volume" in check_crystal(z, f, np.zeros((3, 3)))
    assert "near-zero" in check_crystal(z, f, lat * 0.05)
    assert check_crystal(np.array([], dtype=int), np.zeros((0, 3)), lat) == "no atoms"
    # an upper volume bound only when asked for (the campaign's generated crystals)
    assert check_crystal(z, f, lat * 10) is None
    roomy = check_crystal(z, f, lat * 10, ValidationOptions(max_volume_per_atom=200.0))
    assert "> 200 Å^3 per atom" in roomy
    # a tighter threshold accepts what the default rejects
    z1, f1, lat1 = _arrays(one_atom)
    small = lat1 * (0.45 / 2.87)
    assert "own periodic image" in check_crystal(
        z1, f1, small, ValidationOptions(min_volume_per_atom=0)
    )
    assert (
        check_crystal(z1, f1, small, ValidationOptions(min_distance=0.4, min_volume_per_atom=0))
        is None
    )


def test_label_checks():
    assert check_labels({"a": 1.0, "b": float("nan")}) == (None, ["b"])
    strict = ValidationOptions(allow_nan_labels=False)
    assert check_labels({"a": float("nan")}, strict)[0] == "NaN in property a"
    assert check_labels({"a": float("-inf")})[0] == "inf in property a"


def test_large_cells_use_the_neighbour_list(rock_salt):
    big = rock_salt * (4, 4, 4)  # 512 atoms
    z, f, lat = _arrays(big)
    dense = min_image_distance(f, lat)
    assert dense[0] == pytest.approx(5.64 / 2)
    assert min_image_distance(f, lat, cutoff=0.5) == (float("inf"), -1, -1)
    d, i, j = min_image_distance(f, lat, cutoff=3.0)
    assert d == pytest.approx(dense[0]) and i != j
    f2 = f.copy()
    f2[7] = f2[3] + np.array([0.2 / lat[0, 0], 0, 0])
    assert "0.200 Å apart" in check_crystal(z, f2, lat)
