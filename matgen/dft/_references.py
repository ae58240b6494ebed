"""GPAW elemental references and formation energies on one consistent DFT scale.

The formation energy of a compound is only meaningful when its elements' energies come from the
same code, functional, PAW setups and numerical settings as the compound's. So each element's
ground-state structure (the one the Materials Project uses as its elemental reference) is
relaxed and computed with GPAW under the same :class:`DFTSettings`, through the same cache.

Where the reference structure comes from, in order:

1. the MP-20 row (``mp20_reduced/{train,val,test}.csv``) whose ``material_id`` is the MP
   elemental reference entry's (``hull_refs/2023-02-07-mp-elemental-reference-entries.json.gz``);
2. else a single-element MP-20 row of that element on MP's hull (``e_above_hull`` 0);
3. else ASE's reference crystal structure of the element (``ase.build.bulk``, the experimental
   ground state: fcc Al, bcc Li, ...), which the relaxation brings to PBE's lattice constant.
   (A metastable MP-20 polymorph is never used: its energy above the ground state would go
   straight into every formation energy.)
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from matgen.dft._service import DFTResult, DFTService, with_relax

ELEMENTAL_FILE = "2023-02-07-mp-elemental-reference-entries.json.gz"
MP20_SPLITS = ("train", "val", "test")
#: more MP structures (up to 52 atoms; DiffCSP's time split as kept in the shared data), after
#: MP-20's: competing phases MP-20 lacks (CaGe2, Ca5(GePd)6, ...)
MPTS52_FILES = ("mpts_52_partial/val.csv.gz", "mpts_52_partial/test.csv.gz")
ON_HULL_EV = 1e-3  # a row this close to MP's hull counts as the ground state
#: status of an element with no reference structure (a molecular element such as O, N, H when
#: MP-20 has no crystal of it: ASE's ``bulk`` has none either)
#: elements whose ground state is a molecular crystal (O2, N2, H2, halogens): PBE binds
#: the molecules to each other hardly at all, so a relaxation drifts the cell for meV; their
#: MP structure (PBE-relaxed by MP) is computed as it is, without relaxation
MOLECULAR = frozenset({"H", "N", "O", "F", "Cl", "Br", "I"})
NO_REFERENCE = "no_reference_structure"


@dataclass(frozen=True)
class ReferenceStructure:
    """An element's ground-state structure and where it came from."""

    symbol: str
    atoms: object  # ase.Atoms
    source: str  # e.g. "mp20:mp-13 (MP elemental reference)", "ase:bulk fcc"


class MP20Index:
    """The shared MP structures by reduced formula: MP-20's rows (train, val, test), then
    MPTS-52's (:data:`MPTS52_FILES`) for materials MP-20 does not hold.

    Args:
        data_dir: the datasets root (``hull_refs/``, ``mp20_reduced/``); default
            ``$MATGEN_DATA_DIR``. Without it the index is empty.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None):
        from matgen.data import resolve_data_dir  # here: matgen.data imports torch

        self.data_dir = resolve_data_dir(data_dir)
        self._by_formula: dict[str, list[tuple[float, str, str]]] | None = None
        self._mp_ids: dict[str, str] = {}
        self._sources: dict[str, str] = {}

    def _load(self) -> dict[str, list[tuple[float, str, str]]]:
        if self._by_formula is not None:
            return self._by_formula
        self._by_formula = {}
        if self.data_dir is None:
            return self._by_formula
        refs = Path(self.data_dir) / "hull_refs" / ELEMENTAL_FILE
        if refs.exists():
            with gzip.open(refs, "rt") as fh:
                for el, entry in json.load(fh).items():
                    mid = (entry.get("data") or {}).get("material_id")
                    if mid:
                        self._mp_ids[el] = mid
        import pandas as pd

        for split in MP20_SPLITS:
            path = Path(self.data_dir) / "mp20_reduced" / f"{split}.csv"
            if not path.exists():
                continue
            df = pd.read_csv(path, usecols=["material_id", "pretty_formula", "e_above_hull", "cif"])
            for row in df.itertuples(index=False):
                self._add("mp20", row.pretty_formula, row.e_above_hull, row.material_id, row.cif)
        for name in MPTS52_FILES:
            path = Path(self.data_dir) / name
            if not path.exists():
                continue
            df = pd.read_csv(path, usecols=["material_id", "energy_above_hull", "cif"])
            for row in df.itertuples(index=False):
                if row.material_id in self._sources:
                    continue
                m = _FORMULA_SUM.search(row.cif)
                if m:
                    self._add("mpts52", m.group(1), row.energy_above_hull, row.material_id, row.cif)
        for rows in self._by_formula.values():
            rows.sort()
        return self._by_formula

    def _add(self, source: str, formula: str, e_above_hull, material_id: str, cif: str) -> None:
        from pymatgen.core import Composition

        reduced = Composition(formula).reduced_formula
        self._by_formula.setdefault(reduced, []).append((float(e_above_hull), material_id, cif))
        self._sources[material_id] = source

    def source(self, material_id: str) -> str:
        """``"<dataset>:<material_id>"``, e.g. ``"mp20:mp-13"`` or ``"mpts52:mp-1105294"``."""
        self._load()
        return f"{self._sources.get(material_id, 'mp20')}:{material_id}"

    def rows(self, formula: str) -> list[tuple[float, str, str]]:
        """``(e_above_hull, material_id, cif)`` of every row of that composition, lowest first."""
        from pymatgen.core import Composition

        return self._load().get(Composition(formula).reduced_formula, [])

    def mp_reference_id(self, symbol: str) -> str | None:
        """The material_id of MP's elemental reference entry for ``symbol``."""
        self._load()
        return self._mp_ids.get(symbol)


_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")


def _atoms_from_cif(cif: str):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    st = Structure.from_str(cif, fmt="cif").get_primitive_structure()
    return AseAtomsAdaptor.get_atoms(st)


class ReferenceStructures:
    """Finds elemental ground-state structures in the shared MP data (see the module doc).

    Args:
        data_dir: the datasets root (default ``$MATGEN_DATA_DIR``); without it every element
            falls back to ASE's structures. Or an :class:`MP20Index` to share one.
    """

    def __init__(self, data_dir: str | os.PathLike | MP20Index | None = None):
        self.index = data_dir if isinstance(data_dir, MP20Index) else MP20Index(data_dir)

    def get(self, symbol: str) -> ReferenceStructure:
        rows = self.index.rows(symbol)
        mid = self.index.mp_reference_id(symbol)
        chosen = next((r for r in rows if r[1] == mid), None)
        note = "MP elemental reference"
        if chosen is None and rows and rows[0][0] <= ON_HULL_EV:
            chosen, note = rows[0], "on MP's hull"
        if chosen is not None:
            return ReferenceStructure(
                symbol, _atoms_from_cif(chosen[2]), f"{self.index.source(chosen[1])} ({note})"
            )
        from ase.build import bulk
        from ase.data import chemical_symbols, reference_states

        state = reference_states[chemical_symbols.index(symbol)] or {}
        atoms = bulk(symbol)  # raises for elements without a simple reference crystal
        return ReferenceStructure(symbol, atoms, f"ase:bulk {state.get('symmetry', '?')}")


class FormationEnergyError(RuntimeError):
    """A formation energy could not be computed (a calculation failed); the message says which."""


class ElementalReferences:
    """GPAW energies per atom of the elemental references, computed once and cached.

    Args:
        service: the DFT service (its cache and settings are used for the references too).
        structures: where the reference structures come from.
    """

    def __init__(self, service: DFTService, structures: ReferenceStructures | None = None):
        self.service = service
        self.structures = structures or ReferenceStructures()
        self._results: dict[str, DFTResult] = {}
        self.sources: dict[str, str] = {}

    def result(self, symbol: str) -> DFTResult:
        if symbol not in self._results:
            try:
                ref = self.structures.get(symbol)
            except Exception as exc:  # noqa: BLE001 - ASE has no crystal for O, N, H, ...
                self.sources[symbol] = "none"
                return DFTResult(
                    key=f"ref_{symbol}",
                    status=NO_REFERENCE,
                    formula=symbol,
                    natoms=0,
                    message=f"no reference structure for {symbol} in MP-20 or ASE ({exc})",
                )
            self.sources[symbol] = ref.source
            service = self.service
            if ref.source.startswith("ase:"):  # experimental lattice constant: to PBE's
                service = with_relax(self.service, True)
                self.sources[symbol] += ", relaxed"
            elif symbol in MOLECULAR:
                service = with_relax(self.service, False)
                self.sources[symbol] += ", static at MP's geometry (molecular crystal)"
            self._results[symbol] = service.run(ref.atoms, label=f"ref_{symbol}")
        return self._results[symbol]

    def energy_per_atom(self, symbol: str) -> float:
        r = self.result(symbol)
        if not r.ok:
            raise FormationEnergyError(f"reference {symbol}: {r.status} ({r.message})")
        return float(r.energy_per_atom)

    def formation_energy_per_atom(self, result: DFTResult) -> float:
        """Formation energy (eV/atom) of a finished compound calculation on this scale (with the
        MP hull scale's corrections under the ``"mp"`` scheme: :mod:`matgen.dft._corrections`).

        Raises:
            FormationEnergyError: the compound's or a reference's calculation is not ``ok``.
        """
        if not result.ok:
            raise FormationEnergyError(f"{result.formula}: {result.status} ({result.message})")
        atoms = result.relaxed_atoms()
        counts = Counter(atoms.get_chemical_symbols())
        e_ref = sum(n * self.energy_per_atom(el) for el, n in counts.items())
        return (float(result.energy_ev) - e_ref) / len(atoms) + self.correction_per_atom(atoms)

    def correction_per_atom(self, atoms) -> float:
        """The scheme's energy correction of a compound, eV/atom (0 under ``"none"``).

        Raises:
            FormationEnergyError: MP's scheme rejects the composition.
        """
        if self.service.settings.corrections == "none":
            return 0.0
        from matgen.dft._corrections import hull_scale_correction

        corr = hull_scale_correction(atoms)
        if math.isnan(corr):
            raise FormationEnergyError(
                f"{atoms.get_chemical_formula()}: MP's correction scheme rejects this composition"
            )
        return corr
