"""Convex hull on hand-made entries, the MP reference and the self-consistent hull."""

from __future__ import annotations

import math

import pytest

from matgen.surrogates import ConvexHull

MU = {"Li": -1.9, "O": -4.9}
ENTRIES = [("Li2O", -2.0), ("LiO2", -0.5), ("Li2O2", -1.7)]


def total(formula: str, e_form: float) -> float:
    from pymatgen.core import Composition

    c = Composition(formula)
    return e_form + sum(c.get_atomic_fraction(el) * MU[el.symbol] for el in c.elements)


def test_stable_compound_is_on_the_hull():
    h = ConvexHull(ENTRIES, MU)
    assert h.e_above_hull("Li2O", total("Li2O", -2.0)) == pytest.approx(0.0, abs=1e-9)
    assert h.e_form_per_atom("Li2O", total("Li2O", -2.0)) == pytest.approx(-2.0)


def test_element_above_its_reference_gives_the_difference():
    h = ConvexHull(ENTRIES, MU)
    assert h.e_above_hull("Li", MU["Li"] + 0.3) == pytest.approx(0.3)
    assert h.e_above_hull("O2", MU["O"] - 0.1) == pytest.approx(-0.1)  # signed


def test_unstable_compound_distance_by_hand():
    h = ConvexHull(ENTRIES, MU)
    # hull at x_O = 1/2 between Li2O (x=1/3, -2.0) and O (x=1, 0): -2.0 * (1/2) / (2/3) = -1.5
    # Li2O2 at -1.7 is below that line: it is on the hull; LiO2 (x=2/3) lies above the
    # Li2O2--O line (-1.7 * (1/3) / (1/2) = -1.1333): 0.6333 eV/atom above
    assert h.e_above_hull("Li2O2", total("Li2O2", -1.7)) == pytest.approx(0.0, abs=1e-9)
    assert h.e_above_hull("LiO2", total("LiO2", -0.5)) == pytest.approx(-0.5 + 1.7 * 2 / 3)


def test_missing_element_gives_nan():
    h = ConvexHull(ENTRIES, MU)
    assert math.isnan(h.e_above_hull("NaCl", -3.0))


def test_disk_cache_round_trip(tmp_path):
    h1 = ConvexHull(ENTRIES, MU, cache_dir=tmp_path)
    e1 = h1.e_above_hull("LiO2", total("LiO2", -0.3))
    files = list(tmp_path.rglob("Li-O.json"))
    assert len(files) == 1
    h2 = ConvexHull(ENTRIES, MU, cache_dir=tmp_path)
    assert h2.e_above_hull("LiO2", total("LiO2", -0.3)) == pytest.approx(e1)


def test_mp_reference_hull(datasets_dir, tmp_path):
    h = ConvexHull.from_mp(datasets_dir, cache_dir=tmp_path)
    assert len(h.elemental_energies) == 89
    # a hull vertex of the reference sits at 0 with its own formation energy; 0.1 eV/atom
    # more puts it 0.1 above
    pd = h.phase_diagram("Na-Cl")
    nacl = next(e for e in pd.stable_entries if e.composition.reduced_formula == "NaCl")
    e_tot = total_mp(h, "NaCl", nacl.energy_per_atom)
    assert h.e_above_hull("NaCl", e_tot) == pytest.approx(0.0, abs=1e-6)
    assert h.e_above_hull("NaCl", e_tot + 0.1) == pytest.approx(0.1, abs=1e-6)
    assert nacl.energy_per_atom < -1.5  # MP: about -2.1 eV/atom


def total_mp(h, formula, e_form):
    from pymatgen.core import Composition

    c = Composition(formula)
    return e_form + sum(
        c.get_atomic_fraction(el) * h.elemental_energies[el.symbol] for el in c.elements
    )


def test_self_consistent_hull_uses_given_energies(rock_salt):
    from pymatgen.core import Lattice, Structure

    na = Structure(Lattice.cubic(4.2), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cl = Structure(Lattice.cubic(6.0), ["Cl", "Cl"], [[0, 0, 0], [0.0, 0.0, 0.33]])

    class Fake:
        name = "fake"

    h = ConvexHull.self_consistent([na, cl, rock_salt], Fake(), energies_per_atom=[-1.3, -1.8, -3.6])
    assert h.elemental_energies == {"Na": -1.3, "Cl": -1.8}
    assert h.e_form_per_atom("NaCl", -3.6) == pytest.approx(-3.6 + 1.55)
    assert h.e_above_hull("NaCl", -3.6) == pytest.approx(0.0, abs=1e-9)
    assert h.e_above_hull("NaCl", -3.5) == pytest.approx(0.1)
