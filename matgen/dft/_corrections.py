"""Which Materials Project energy corrections a composition gets, and so whether a GPAW number
can be set beside an MP-scale (or MLIP) number.

GPAW runs plain PBE: no +U, no fitted anion corrections. The Materials Project's MP2020 scheme
corrects oxides, sulfides, halides, nitrides, hydrides, ... (anion corrections) and mixes GGA
with GGA+U for the 3d/4d/5d metals Co, Cr, Fe, Mn, Mo, Ni, V, W in oxides and fluorides. Where
it applies any of them, MP's (and an MP-trained MLIP's) formation energies and hull distances sit
on another scale than GPAW's; the DFT hull itself stays internally consistent (every phase is
GPAW), but its numbers do not compare one to one with the MLIP's.
"""

from __future__ import annotations

import warnings


def mp2020_corrections(structure) -> list[tuple[str, float]]:
    """MP2020 adjustments of ``structure``'s composition: ``(name, eV/atom)`` pairs, empty when
    MP applies none (intermetallics, alloys). GGA+U is assumed where MP's input set would use it
    (as in :func:`matgen.surrogates._mlip.mp2020_corrected`)."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from matgen.surrogates._mlip import _mp2020

    compat = _mp2020()
    comp = structure.composition
    anion = max(comp.elements, key=lambda el: el.X).symbol
    u = compat.u_settings.get(anion, {})
    hub = {el.symbol: float(u[el.symbol]) for el in comp.elements if u.get(el.symbol, 0)}
    entry = ComputedStructureEntry(
        structure,
        -5.0 * len(structure),  # the adjustments do not depend on the energy
        parameters={"run_type": "GGA+U" if hub else "GGA", "hubbards": hub, "is_hubbard": bool(hub)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            adjustments = compat.get_adjustments(entry)
        except Exception as exc:  # noqa: BLE001 - a composition the scheme rejects
            return [(f"MP2020 rejects this composition ({str(exc).splitlines()[0]})", 0.0)]
    return [(a.name, round(a.value / len(structure), 4)) for a in adjustments]


def mp2020_note(structure) -> str:
    """One line: ``"none"`` when MP applies no correction (GPAW and MP/MLIP numbers compare),
    else the corrections and that GPAW's plain-PBE numbers are not on that scale."""
    corr = mp2020_corrections(structure)
    if not corr:
        return "none"
    what = "; ".join(f"{n} {v:+.3f} eV/atom" if v else n for n, v in corr)
    return f"{what}: GPAW is plain PBE without these, not comparable with MP/MLIP numbers"
