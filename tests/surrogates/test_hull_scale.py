"""MLIP energies go onto the MP reference hull's own scale (MP's legacy corrections), issue #17.

The hull (Matbench mp_e_form) carries MaterialsProjectCompatibility's corrections: none for Se,
Te, Br, I or Sb, the 2018 oxide / sulfide / GGA+U values, and N, F, Cl, H corrected through
fitted gas references. SevenNet's raw energies get those; CHGNet's MP2020-corrected ones swap
MP2020's for them.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from matgen.surrogates._mlip import (
    HULL_SCALE,
    LEGACY_GAS_SHIFTS,
    energy_corrections,
    mlip_energy_scale,
    to_hull_scale,
)
from matgen.surrogates._score import mp_compatible_energies

# legacy MaterialsProjectCompatibility values (pymatgen's MPCompatibility.yaml), eV per atom of
# the anion / of the GGA+U metal
LEGACY_OXIDE, LEGACY_SULFIDE, LEGACY_FE_OXIDE_U = -0.70229, -0.66346, -2.733
MP2020_FE_OXIDE_U = -2.256


def binary(a: str, b: str, n_a: int = 1, n_b: int = 1, spacing: float = 3.0):
    """A simple cubic cell of ``n_a`` a and ``n_b`` b atoms on a line ``spacing`` Å apart
    (corrections depend on the composition and on anion-anion contacts only)."""
    from pymatgen.core import Lattice, Structure

    n = n_a + n_b
    return Structure(Lattice.tetragonal(spacing * 2, spacing * n), [a] * n_a + [b] * n_b,
                     [[0, 0, i / n] if i % 2 == 0 else [0.5, 0.5, i / n] for i in range(n)])


def test_se_te_br_i_sb_compounds_get_no_correction_on_the_hull_scale():
    structs = [binary("Zn", "Se"), binary("Cd", "Te"), binary("K", "Br"), binary("Cs", "I"),
               binary("Ga", "Sb")]
    legacy = energy_corrections(structs, HULL_SCALE)
    mp2020 = energy_corrections(structs, "mp2020")
    assert legacy == pytest.approx(np.zeros(len(structs)), abs=1e-12)
    assert np.all(mp2020 < -0.05)  # MP2020 corrects every one of these anions
    assert mp2020[0] == pytest.approx(-0.472 / 2, abs=1e-3)  # Se: MP2020 -0.472 per Se
    # SevenNet's raw energy of ZnSe stays raw; CHGNet's (MP2020 scale) loses MP2020's Se term
    assert to_hull_scale(structs[:1], [-3.0], "raw")[0] == pytest.approx(-3.0)
    assert to_hull_scale(structs[:1], [-3.0], "mp2020")[0] == pytest.approx(-3.0 + 0.236)


def test_oxides_sulfides_and_u_metals_get_the_legacy_values():
    mgo, feo, zns = binary("Mg", "O"), binary("Fe", "O"), binary("Zn", "S")
    legacy = energy_corrections([mgo, feo, zns], HULL_SCALE)
    assert legacy[0] == pytest.approx(LEGACY_OXIDE / 2, abs=1e-4)
    # FeO is GGA+U in MP: the legacy Fe mixing value, not MP2020's
    assert legacy[1] == pytest.approx((LEGACY_OXIDE + LEGACY_FE_OXIDE_U) / 2, abs=1e-4)
    assert legacy[2] == pytest.approx(LEGACY_SULFIDE / 2, abs=1e-4)
    mp2020 = energy_corrections([feo], "mp2020")
    assert mp2020[0] == pytest.approx((-0.687 + MP2020_FE_OXIDE_U) / 2, abs=1e-3)


def test_gas_shifts_are_the_hull_references_minus_the_legacy_gas_energies():
    from monty.serialization import loadfn
    from pymatgen.entries.compatibility import MODULE_DIR

    from matgen.surrogates._hull import ASSET_DIR

    mu = json.loads((ASSET_DIR / "elemental_energies.json").read_text())
    gas = loadfn(f"{MODULE_DIR}/MPCompatibility.yaml")["Advanced"]["CompoundEnergies"]
    for el, shift in LEGACY_GAS_SHIFTS.items():
        assert shift == pytest.approx(mu[el] - gas[f"{el}2"], abs=1e-6)
    # in a compound, whatever N's oxidation state; never in the element itself
    gan, n2 = binary("Ga", "N"), binary("N", "N", 1, 1, spacing=1.1)
    assert energy_corrections([gan], HULL_SCALE)[0] == pytest.approx(
        LEGACY_GAS_SHIFTS["N"] / 2, abs=1e-6)
    assert energy_corrections([n2], HULL_SCALE)[0] == 0.0


def test_mp2020_to_hull_scale_round_trips_with_raw(rock_salt, triclinic):
    structs = [rock_salt, triclinic, binary("Zn", "Se"), binary("Fe", "O"), binary("Si", "Si")]
    raw = np.array([-3.4, -6.1, -3.0, -7.0, -5.4])
    mp2020 = raw + energy_corrections(structs, "mp2020")
    from_raw = to_hull_scale(structs, raw, "raw")
    assert to_hull_scale(structs, mp2020, "mp2020") == pytest.approx(from_raw, abs=1e-9)
    assert to_hull_scale(structs, from_raw, HULL_SCALE) == pytest.approx(from_raw)
    assert from_raw[4] == pytest.approx(-5.4)  # an element: no correction on any scale
    assert math.isnan(to_hull_scale([rock_salt], [math.nan], "mp2020")[0])
    with pytest.raises(ValueError, match="energy scale"):
        to_hull_scale([rock_salt], [-3.0], "r2scan")


def test_every_mlip_says_its_scale_and_scoring_follows_it(rock_salt):
    from matgen.surrogates._chgnet import CHGNetMLIP
    from matgen.surrogates._sevennet import SevenNetMLIP

    assert CHGNetMLIP.energy_scale == "mp2020" and SevenNetMLIP.energy_scale == "raw"
    s = binary("Zn", "Se")
    for mlip, want in ((SimpleNamespace(energy_scale="raw"), -3.0),
                       (SimpleNamespace(energy_scale="mp2020"), -3.0 + 0.236),
                       (SimpleNamespace(), -3.0 + 0.236),
                       (SimpleNamespace(energy_scale=HULL_SCALE), -3.0)):
        assert mp_compatible_energies(mlip, [s], [-3.0])[0] == pytest.approx(want, abs=1e-3)
    assert mlip_energy_scale(SimpleNamespace()) == "mp2020"


# MP-20 (MP2020 scale, MP's raw elemental references) formation energies of hull phases,
# eV/atom: an MP2020-scale MLIP that got them exactly must land on the legacy-scale hull
MP20_HULL_PHASES = [
    ("Zn", "Se", 1, 1, -0.95153),  # mp-1190
    ("Cd", "Te", 1, 1, -0.66930),  # mp-406
    ("Sr", "Te", 1, 1, -1.95410),  # mp-1958
    ("Rb", "I", 1, 1, -1.69583),  # mp-22903
    ("Zn", "S", 1, 1, -1.06237),  # mp-557308
    ("Fe", "O", 2, 3, -1.70710),  # mp-19770, Fe2O3
]


@pytest.mark.parametrize(("a", "b", "n_a", "n_b", "e_form"), MP20_HULL_PHASES)
def test_mp2020_energies_of_hull_phases_land_on_the_hull(tmp_path, a, b, n_a, n_b, e_form):
    from matgen.surrogates import ConvexHull

    # the shipped copy of the hull (tmp_path has no hull_refs), MP's elemental references
    hull = ConvexHull.from_mp(tmp_path, cache_dir=None, elemental="mp")
    s = binary(a, b, n_a, n_b)
    comp = s.composition
    total = e_form + sum(comp.get_atomic_fraction(el) * hull.elemental_energies[el.symbol]
                         for el in comp.elements)
    chgnet_like = mp_compatible_energies(SimpleNamespace(energy_scale="mp2020"), [s], [total])
    assert hull.e_above_hull(comp, chgnet_like[0]) == pytest.approx(0.0, abs=0.025)
    raw = total - energy_corrections([s], "mp2020")[0]  # SevenNet-like: the raw DFT energy
    sevennet_like = mp_compatible_energies(SimpleNamespace(energy_scale="raw"), [s], [raw])
    assert sevennet_like[0] == pytest.approx(chgnet_like[0], abs=1e-9)
    # on the MP2020 scale the same energy sat far off this hull (0.08 to 0.24 eV/atom)
    assert abs(hull.e_above_hull(comp, total)) > 0.07


def test_a_hull_that_cannot_import_stops_scoring_instead_of_failing_every_structure(rock_salt):
    """A missing module (2026-12-04: pymatgen's phase diagram needs plotly) is a broken
    installation, not one structure's failure: it must not turn into 60 null hull distances."""
    from matgen.surrogates._score import _energy_row

    class Hull:
        def __init__(self):
            self.elemental_energies = {"Na": -1.3, "Cl": -1.8}

        def e_form_per_atom(self, comp, e):
            return -2.0

        def e_above_hull(self, comp, e):
            raise ImportError("No module named 'plotly'")

    r = SimpleNamespace(id="x", energy_per_atom=-3.5, converged=True, steps=3, max_force=0.01,
                        error=None)
    with pytest.raises(ImportError, match="plotly"):
        _energy_row(rock_salt, r, -3.5, Hull())

    class BadHull(Hull):
        def e_above_hull(self, comp, e):
            raise ValueError("degenerate hull")

    row = _energy_row(rock_salt, r, -3.5, BadHull())
    assert row["error"] == "hull failed: degenerate hull" and math.isnan(row["e_above_hull"])
