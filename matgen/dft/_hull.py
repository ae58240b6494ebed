"""Energy above the hull on one GPAW scale: the candidate, its elements and its competing phases.

Which phases compete is MP's answer: the compounds on the Materials Project formation-energy
hull of the candidate's chemical system and its subsystems (``hull_refs``, through
:class:`matgen.surrogates.ConvexHull`). Their structures come from the shared MP data (MP-20,
then MPTS-52: the row of that composition closest to MP's hull), or from the caller
(``phases``: e.g. a rock-salt KBr built from its prototype, which the data lack); each is
computed with the same service and settings as the candidate, so no MP energy enters the GPAW
hull (a caller's structure is relaxed first: it is not at a PBE minimum as MP's are). A
competing phase with no structure (or whose calculation fails) is left out and named in the
result; the hull is then incomplete and ``e_above_hull`` a lower bound (a phase left out can
only leave the hull too high, never too low).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from matgen.dft._references import (
    ElementalReferences,
    FormationEnergyError,
    MP20Index,
    _atoms_from_cif,
)
from matgen.dft._service import DFTResult, with_relax


@dataclass(frozen=True)
class DFTHullResult:
    """A candidate's place on the GPAW hull (eV/atom; ``None`` where it could not be computed).

    ``e_above_hull`` is signed: negative means below every known phase on the GPAW scale.
    ``competing`` maps each competing phase's reduced formula to what happened to it
    (``"mp20:<material_id>"``, ``"mpts52:<material_id>"`` or ``"given"`` when computed, else
    why not); ``complete`` says every one was.
    """

    formula: str
    e_form_per_atom: float | None
    e_above_hull: float | None
    hull_energy_per_atom: float | None
    competing: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    message: str = ""


class DFTHull:
    """GPAW hulls of chemical systems, built from cached calculations.

    Args:
        references: the elemental references (their service runs the competing phases too).
        index: the MP-20 rows to take competing-phase structures from (default: the
            references' own index).
        mp_hull: a :class:`matgen.surrogates.ConvexHull` saying which phases are on MP's hull
            (default: ``ConvexHull.from_mp(elemental="mp")`` on the index's data folder).
        phases: structures (pymatgen or ASE) of competing phases, by formula, used before the
            index's; relaxed (cell + positions) before their energy is taken.
    """

    def __init__(
        self,
        references: ElementalReferences,
        index: MP20Index | None = None,
        mp_hull=None,
        phases: dict | None = None,
    ):
        self.references = references
        self.index = index or references.structures.index
        self._mp_hull = mp_hull
        self.phases = {_reduced(f): s for f, s in (phases or {}).items()}

    def competing_phases(self, elements) -> list[str]:
        """Reduced formulas of the compounds on MP's hull within ``elements`` (no elements)."""
        if self._mp_hull is None:
            from matgen.surrogates import ConvexHull

            self._mp_hull = ConvexHull.from_mp(self.index.data_dir, elemental="mp")
        pd = self._mp_hull.phase_diagram("-".join(sorted(set(elements))))
        return sorted(
            {e.composition.reduced_formula for e in pd.stable_entries if len(e.composition) > 1}
        )

    def phase_result(self, formula: str) -> tuple[DFTResult | None, str]:
        """The GPAW calculation of a competing phase (None and why, when there is none)."""
        given = self.phases.get(_reduced(formula))
        if given is not None:
            res = with_relax(self.references.service, True).run(
                given, label=f"given_{_reduced(formula)}"
            )
            return res, "given" if res.ok else f"given {res.status}"
        rows = self.index.rows(formula)
        if not rows:
            return None, "no MP structure"
        _, mid, cif = rows[0]
        res = self.references.service.run(_atoms_from_cif(cif), label=f"phase_{mid}")
        src = self.index.source(mid)
        return res, src if res.ok else f"{src} {res.status}"

    def e_above_hull(self, result: DFTResult) -> DFTHullResult:
        """Where a finished candidate calculation sits on the GPAW hull of its system."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        formula = result.formula
        try:
            e_form = self.references.formation_energy_per_atom(result)
        except FormationEnergyError as exc:
            return DFTHullResult(formula, None, None, None, message=str(exc))
        comp = Composition(result.relaxed_atoms().get_chemical_formula())
        elements = [el.symbol for el in comp.elements]
        entries = [PDEntry(Composition(el), 0.0) for el in elements]
        competing: dict[str, str] = {}
        for f in self.competing_phases(elements):
            res, note = self.phase_result(f)
            competing[f] = note
            if res is None or not res.ok:
                continue
            try:
                ef = self.references.formation_energy_per_atom(res)
            except FormationEnergyError as exc:
                competing[f] = f"{note}: {exc}"
                continue
            c = res.relaxed_atoms().get_chemical_formula()
            entries.append(PDEntry(Composition(c), ef * len(res.relaxed_atoms())))
        hull = PhaseDiagram(entries).get_hull_energy_per_atom(comp)
        complete = all(
            v.split(":")[0] in ("mp20", "mpts52", "given") and " " not in v
            for v in competing.values()
        )
        return DFTHullResult(
            formula,
            e_form,
            e_form - hull,
            hull,
            competing,
            complete,
            "" if complete else "incomplete hull: e_above_hull is a lower bound",
        )


def _reduced(formula: str) -> str:
    from pymatgen.core import Composition

    return Composition(formula).reduced_formula
