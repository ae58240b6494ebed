"""The ``"mp"`` scheme: PBE+U where MP uses it, the MP hull scale's corrections on compounds,
cache keys of plain-PBE calculations unchanged, and the shared data's structures (MP-20, then
MPTS-52) and a caller's for competing phases. No GPAW here (a stub service)."""

from __future__ import annotations

import gzip
import math

import pandas as pd
import pytest

from matgen.campaign._config import OracleConfig
from matgen.dft import (
    CORRECTION_SCHEMES,
    DFTHull,
    DFTResult,
    DFTSettings,
    ElementalReferences,
    MP20Index,
    correction_note,
    hull_scale_correction,
    mp_hubbard,
)
from matgen.surrogates._mlip import HULL_SCALE, energy_corrections

E_ELEMENT = {"Na": -1.3, "Cl": -1.8, "K": -1.1, "Br": -1.6}  # the stub's scale, eV/atom
E_FORM_RAW = {"NaCl": -1.9, "KBr": -1.7}  # the stub's uncorrected formation energies


def _structure(formula: str, a: float = 5.6):
    from pymatgen.core import Composition, Lattice, Structure

    els = [el.symbol for el, n in Composition(formula).items() for _ in range(int(n))]
    return Structure(Lattice.cubic(a), els, [[i / len(els)] * 3 for i in range(len(els))])


class StubStructures:
    """One-atom reference cells for any element (ASE has no crystal of Cl or Br)."""

    def __init__(self, index=None):
        self.index = index

    def get(self, symbol):
        from ase import Atoms

        from matgen.dft import ReferenceStructure

        return ReferenceStructure(symbol, Atoms(symbol, cell=[3.0] * 3, pbc=True), "stub")


class StubService:
    """Energies from the tables above; records the settings each structure would run at."""

    def __init__(self, cache_dir, settings: DFTSettings):  # DFTService's signature
        self.settings, self.cache_dir = settings, cache_dir
        self.runs: list[tuple[str, DFTSettings]] = []

    def run(self, atoms, label=""):
        from pymatgen.core import Composition
        from pymatgen.io.ase import AseAtomsAdaptor

        if not hasattr(atoms, "get_chemical_formula"):
            atoms = AseAtomsAdaptor.get_atoms(atoms)
        comp = Composition(atoms.get_chemical_formula())
        self.runs.append((comp.reduced_formula, self.settings))
        e = sum(n * E_ELEMENT[el.symbol] for el, n in comp.items())
        e += E_FORM_RAW.get(comp.reduced_formula, 0.0) * len(atoms)
        relaxed = {
            "numbers": atoms.numbers.tolist(),
            "cell": atoms.cell.array.tolist(),
            "positions": atoms.positions.tolist(),
        }
        return DFTResult(key=label, status="ok", formula=comp.reduced_formula,
                         natoms=len(atoms), energy_ev=e, energy_per_atom=e / len(atoms),
                         relaxed=relaxed)


def test_plain_pbe_cache_keys_survive_the_scheme():
    # the digest of static settings before the scheme existed (git bb811c0): every cached
    # plain-PBE single point keeps its key; PBE+U runs get new ones, and relaxations too (they
    # run at RELAX_ECUT_FACTOR x the cutoff since; the old default digest was 707c62df32d1e98e)
    assert DFTSettings(relax=False).digest() == "cc55a2a8d6cc4078"
    assert DFTSettings().digest() != "707c62df32d1e98e"
    assert DFTSettings().physics()["relax_ecut_ev"] == 520.0
    assert "relax_ecut_ev" not in DFTSettings(relax=False).physics()
    assert DFTSettings(corrections="none").digest() == DFTSettings().digest()
    s = DFTSettings()
    assert s.for_structure(["Ca", "Pd", "Ge"]).digest() == s.digest()  # intermetallic
    assert s.for_structure(["K", "Br"]).digest() == s.digest()  # MP runs plain PBE
    with pytest.raises(ValueError, match="unknown DFT correction scheme"):
        DFTSettings(corrections="mp2020")
    assert set(CORRECTION_SCHEMES) == set(OracleConfig.model_fields["dft_corrections"]
                                          .annotation.__args__)


def test_mp_scheme_runs_pbe_plus_u_where_mp_does():
    u, moments = mp_hubbard(["Li", "Ni", "F"])
    assert u == {"Ni": 6.2} and moments == {"Ni": 5.0}  # MP's U and MAGMOM for Ni
    assert mp_hubbard(["Fe", "O"])[0] == {"Fe": 5.3}
    assert mp_hubbard(["Ni", "Sn"]) == ({}, {})  # no oxide / fluoride: plain PBE
    assert mp_hubbard(["Ni"]) == ({}, {})
    s = DFTSettings().for_structure(["Li", "Ni", "F", "F", "F", "F"])
    assert s.hubbard_u == (("Ni", 6.2),) and s.magmom_of("Ni") == 5.0
    assert s.physics()["hubbard_u"] == [["Ni", 6.2]]
    assert s.digest() != DFTSettings().digest()
    plain = DFTSettings(corrections="none").for_structure(["Li", "Ni", "F"])
    assert plain.hubbard_u == () and plain.magmom_of("Ni") == DFTSettings().magmom_of("Ni")


def test_hull_scale_correction_is_the_mlip_scores_one():
    nacl, kbr = _structure("NaCl"), _structure("KBr")
    assert hull_scale_correction(nacl) == pytest.approx(
        energy_corrections([nacl], HULL_SCALE)[0]) and hull_scale_correction(nacl) < -0.1
    assert hull_scale_correction(kbr) == 0.0  # the legacy scale corrects no bromide
    assert hull_scale_correction(_structure("Na")) == 0.0
    assert correction_note(kbr) == "none"
    assert "applied" in correction_note(nacl) and "not applied" in correction_note(nacl, "none")
    assert "Ni U=6.2" in correction_note(_structure("NiO"))


@pytest.mark.parametrize("scheme", CORRECTION_SCHEMES)
def test_formation_energy_carries_the_scheme(tmp_path, scheme):
    refs = ElementalReferences(StubService(tmp_path, DFTSettings(corrections=scheme)), StubStructures())
    nacl = refs.service.run(_structure("NaCl"))
    e = refs.formation_energy_per_atom(nacl)
    shift = hull_scale_correction(_structure("NaCl")) if scheme == "mp" else 0.0
    assert e == pytest.approx(E_FORM_RAW["NaCl"] + shift)
    kbr = refs.service.run(_structure("KBr"))
    assert refs.formation_energy_per_atom(kbr) == pytest.approx(E_FORM_RAW["KBr"])


class _MPHull:
    def phase_diagram(self, chemsys):
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        entries = [PDEntry(Composition(el), 0.0) for el in chemsys.split("-")]
        return PhaseDiagram(entries + [PDEntry(Composition("KBr"), -3.5)])


def test_a_callers_phase_is_relaxed_and_completes_the_hull(tmp_path):
    service = StubService(tmp_path, DFTSettings(relax=False))
    index = MP20Index(tmp_path)
    refs = ElementalReferences(service, StubStructures(index))
    without = DFTHull(refs, index, _MPHull())
    cand = service.run(_structure("KBr", 6.0))
    r = without.e_above_hull(cand)
    assert r.competing == {"KBr": "no MP structure"} and not r.complete
    relaxing = []

    class Relaxing(StubService):
        def run(self, atoms, label=""):
            relaxing.append(self.settings.relax)
            return super().run(atoms, label)

    service2 = Relaxing(tmp_path, DFTSettings(relax=False))
    refs2 = ElementalReferences(service2, StubStructures(index))
    given = DFTHull(refs2, index, _MPHull(), phases={"BrK": _structure("KBr", 6.6)})
    r2 = given.e_above_hull(cand)
    assert r2.competing == {"KBr": "given"} and r2.complete
    assert r2.e_above_hull == pytest.approx(0.0, abs=1e-9)
    assert relaxing[-1] is True  # the given phase ran on a relaxing service


def test_index_adds_mpts52_rows_mp20_lacks(tmp_path):
    (tmp_path / "mp20_reduced").mkdir()
    (tmp_path / "mpts_52_partial").mkdir()
    kbr = _structure("KBr", 6.6).to(fmt="cif")
    pd.DataFrame([{"material_id": "mp-23251", "pretty_formula": "KBr", "e_above_hull": 0.0,
                   "cif": kbr}]).to_csv(tmp_path / "mp20_reduced" / "test.csv", index=False)
    rows = [
        {"material_id": "mp-23251", "energy_above_hull": 0.0, "cif": kbr},  # MP-20 has it
        {"material_id": "mp-22862", "energy_above_hull": 0.0,
         "cif": _structure("NaCl").to(fmt="cif")},
    ]
    with gzip.open(tmp_path / "mpts_52_partial" / "test.csv.gz", "wt") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)
    index = MP20Index(tmp_path)
    assert [r[1] for r in index.rows("KBr")] == ["mp-23251"]
    assert index.source("mp-23251") == "mp20:mp-23251"
    assert [r[1] for r in index.rows("NaCl")] == ["mp-22862"]
    assert index.source("mp-22862") == "mpts52:mp-22862"
    assert not math.isnan(index.rows("NaCl")[0][0])


def test_oxygen_triplet_molecular_references_static_ase_references_relaxed(tmp_path):
    s = DFTSettings()
    assert s.for_structure(["O"] * 8).magmom_of("O") == 1.0  # MP's O2 is spin-polarised
    assert s.for_structure(["Ba", "O"]).magmom_of("O") == 0.0
    assert DFTSettings(corrections="none").for_structure(["O"]).magmom_of("O") == 0.0

    class Structures:
        index = None

        def get(self, symbol):
            from ase import Atoms

            from matgen.dft import ReferenceStructure

            src = "ase:bulk bcc" if symbol == "Na" else "mp20:mp-1"
            return ReferenceStructure(symbol, Atoms(symbol, cell=[3.0] * 3, pbc=True), src)

    ran = []

    class Recording(StubService):
        def run(self, atoms, label=""):
            ran.append((label, self.settings.relax))
            return super().run(atoms, label)

    refs = ElementalReferences(Recording(tmp_path, DFTSettings(relax=True)), Structures())
    for el in ("Cl", "Na", "K"):
        assert refs.result(el).ok
    assert ran == [("ref_Cl", False), ("ref_Na", True), ("ref_K", True)]
    assert "static" in refs.sources["Cl"] and "static" not in refs.sources["K"]
    # a static service (e.g. benchmarks' --static) still relaxes an ASE crystal (experimental
    # lattice constant), and only that
    ran.clear()
    refs = ElementalReferences(Recording(tmp_path, DFTSettings(relax=False)), Structures())
    for el in ("Cl", "Na", "K"):
        assert refs.result(el).ok
    assert ran == [("ref_Cl", False), ("ref_Na", True), ("ref_K", False)]
    assert refs.sources["Na"] == "ase:bulk bcc, relaxed"
