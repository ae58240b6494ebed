"""DFTHull's bookkeeping with a stub service (no GPAW): which phases enter, signed distances."""

from __future__ import annotations

import pandas as pd
import pytest

from matgen.dft import (
    DFTHull,
    DFTResult,
    DFTSettings,
    DFTVerifier,
    ElementalReferences,
    MP20Index,
    ReferenceStructures,
)

E_ELEMENT = {"Al": -3.7, "Ni": -5.5}  # eV/atom on the stub's scale
E_FORM = {"AlNi": -0.60, "Al3Ni": -0.40}  # the stub's formation energies, eV/atom


class StubService:
    """Returns energies from the tables above instead of running GPAW."""

    def __init__(self, fail: frozenset[str] = frozenset()):
        self.settings = DFTSettings()
        self.fail = fail
        self.calls: list[str] = []

    def run(self, atoms, label=""):
        from pymatgen.core import Composition

        comp = Composition(atoms.get_chemical_formula())
        f = comp.reduced_formula
        self.calls.append(f)
        if f in self.fail:
            return DFTResult(key=f, status="scf_not_converged", formula=f, natoms=len(atoms))
        e = sum(n * E_ELEMENT[el.symbol] for el, n in comp.items())
        e += E_FORM.get(f, 0.0) * len(atoms)
        relaxed = {
            "numbers": atoms.numbers.tolist(),
            "cell": atoms.cell.array.tolist(),
            "positions": atoms.positions.tolist(),
        }
        return DFTResult(
            key=f,
            status="ok",
            formula=f,
            natoms=len(atoms),
            energy_ev=e,
            energy_per_atom=e / len(atoms),
            relaxed=relaxed,
        )


class StubMPHull:
    """MP says AlNi, Al3Ni and AlNi3 are on the hull (AlNi3 has no MP-20 structure here)."""

    def phase_diagram(self, chemsys):
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        entries = [PDEntry(Composition(el), 0.0) for el in chemsys.split("-")]
        for f, e in {"AlNi": -0.6, "Al3Ni": -0.4, "AlNi3": -0.4}.items():
            entries.append(PDEntry(Composition(f), e * Composition(f).num_atoms))
        return PhaseDiagram(entries)


def _cif(formula: str) -> str:
    from pymatgen.core import Lattice, Structure

    if formula == "AlNi":
        st = Structure(Lattice.cubic(2.88), ["Al", "Ni"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    else:
        st = Structure(
            Lattice.cubic(3.67),
            ["Ni", "Al", "Al", "Al"],
            [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        )
    return st.to(fmt="cif")


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "mp20_reduced").mkdir()
    rows = [
        {"material_id": "mp-1", "pretty_formula": "AlNi", "e_above_hull": 0.0, "cif": _cif("AlNi")},
        {
            "material_id": "mp-2",
            "pretty_formula": "Al3Ni",
            "e_above_hull": 0.0,
            "cif": _cif("Al3Ni"),
        },
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "mp20_reduced" / "test.csv", index=False)
    return tmp_path


def _hull(data_dir, service):
    index = MP20Index(data_dir)
    refs = ElementalReferences(service, ReferenceStructures(index))
    return DFTHull(refs, index, mp_hull=StubMPHull())


def _candidate(e_form: float) -> DFTResult:
    """A finished AlNi (CsCl) calculation with formation energy ``e_form`` on the stub scale."""
    from ase import Atoms

    atoms = Atoms("AlNi", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[2.9] * 3, pbc=True)
    r = StubService().run(atoms)
    e = r.energy_ev + (e_form - E_FORM["AlNi"]) * r.natoms
    return DFTResult(**(r.to_dict() | {"energy_ev": e, "energy_per_atom": e / r.natoms}))


def test_candidate_on_and_above_the_gpaw_hull(data_dir):
    service = StubService()
    hull = _hull(data_dir, service)
    assert hull.competing_phases(["Ni", "Al"]) == ["Al3Ni", "AlNi", "AlNi3"]
    on = hull.e_above_hull(_candidate(-0.60))
    assert on.e_form_per_atom == pytest.approx(-0.60)
    assert on.e_above_hull == pytest.approx(0.0, abs=1e-9)
    above = hull.e_above_hull(_candidate(-0.45))
    assert above.e_above_hull == pytest.approx(0.15)
    below = hull.e_above_hull(_candidate(-0.70))
    assert below.e_above_hull == pytest.approx(-0.10)  # signed: a new ground state
    # AlNi3 has no MP-20 structure: named, and the hull is marked incomplete
    assert above.competing["AlNi3"] == "no MP structure" and not above.complete
    assert above.competing["AlNi"] == "mp20:mp-1"


def test_failed_competing_phase_is_named_not_used(data_dir):
    hull = _hull(data_dir, StubService(fail=frozenset({"AlNi"})))
    r = hull.e_above_hull(_candidate(-0.45))
    # without AlNi the hull at x_Ni = 0.5 is the Al3Ni-Ni tie line: -0.4 * 0.5 / 0.75
    assert r.hull_energy_per_atom == pytest.approx(-0.4 * 0.5 / 0.75)
    assert r.e_above_hull == pytest.approx(-0.45 + 0.4 * 0.5 / 0.75)
    assert "scf_not_converged" in r.competing["AlNi"] and not r.complete


def test_failed_candidate_gives_no_number(data_dir):
    hull = _hull(data_dir, StubService())
    bad = DFTResult(key="k", status="timeout", formula="AlNi", natoms=2, message="killed")
    r = hull.e_above_hull(bad)
    assert r.e_above_hull is None and r.e_form_per_atom is None and "timeout" in r.message


def test_verifier_rows_say_who_judged_and_why_not(data_dir, tmp_path):
    from ase import Atoms

    v = DFTVerifier(tmp_path, data_dir=data_dir, service=StubService(), mp_hull=StubMPHull())
    good = Atoms("AlNi", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[2.9] * 3, pbc=True)
    v_bad = DFTVerifier(
        tmp_path, data_dir=data_dir, service=StubService(frozenset({"AlNi"})), mp_hull=StubMPHull()
    )
    (row,) = v.verify([good])
    assert row["judge"] == "dft:gpaw-pbe" and row["dft_status"] == "ok"
    assert row["dft_e_form_per_atom"] == pytest.approx(-0.60)
    assert row["dft_e_above_hull"] == pytest.approx(0.0, abs=1e-9)
    assert (
        row["dft_hull_complete"] is False
        and "AlNi3=no MP structure" in row["dft_competing_phases"]
    )
    (bad,) = v_bad.verify([good])
    assert bad["dft_status"] == "scf_not_converged"
    assert bad["dft_energy_per_atom"] is None and bad["dft_e_above_hull"] is None
