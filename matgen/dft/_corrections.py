"""Putting GPAW energies on the scale of matgen's MP hull, and saying which scale a number is on.

matgen's convex hull (and so every MLIP ``e_above_hull`` in a score table) is on the Materials
Project's *legacy* correction scale (:data:`matgen.surrogates.HULL_SCALE`): fitted corrections
for oxides, peroxides, sulfides and the N, F, Cl, H gas references, and a GGA/GGA+U mixing
correction for Co, Cr, Fe, Mn, Mo, Ni, V, W in oxides and fluorides, whose energies MP computes
with PBE+U. Under the ``"mp"`` scheme (:class:`matgen.dft.DFTSettings`) the DFT oracle does the
same: such a compound runs PBE+U at MP's U values (Dudarev, d states) and starting moments, and
every compound's energy gets the hull scale's corrections (:func:`hull_scale_correction`), the
same function the MLIP scores use. Elements get none, as in MP.

The corrections were fitted to VASP energies; GPAW's PAW setups and its +U implementation are
not VASP's, so corrected GPAW numbers carry that transfer error, measured separately
(``benchmarks/results/dft_formation_corrected.json``). Where MP corrects nothing (intermetallics,
alloys; on the legacy scale also bromides, iodides, selenides, tellurides, antimonides) the two
schemes give the same calculation and the same number.
"""

from __future__ import annotations

import math


def mp_hubbard(symbols) -> tuple[dict[str, float], dict[str, float]]:
    """MP's PBE+U of a composition (element symbols): ``({element: U eV}, {element: starting
    moment})`` for the elements that get a U (:func:`matgen.surrogates._mlip.mp_hubbard_u`, the
    rule the MLIP scores' corrections assume), empty dicts for plain PBE."""
    from pymatgen.core import Element
    from pymatgen.io.vasp.sets import MPRelaxSet

    from matgen.surrogates._mlip import mp_hubbard_u

    elements = [Element(s) for s in dict.fromkeys(map(str, symbols))]
    if len(elements) < 2:
        return {}, {}
    u = mp_hubbard_u(elements)
    moments = MPRelaxSet.CONFIG["INCAR"]["MAGMOM"]
    return u, {el: float(moments.get(el, 0.6)) for el in u}


def hull_scale_correction(structure) -> float:
    """The hull scale's energy correction of ``structure`` (pymatgen Structure or ASE Atoms),
    eV/atom: 0.0 for an element or a composition MP corrects nothing in, NaN when the scheme
    rejects the composition."""
    from matgen.surrogates._mlip import HULL_SCALE, energy_corrections

    if not hasattr(structure, "composition"):
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(structure)
    if len(structure.composition.elements) < 2:
        return 0.0
    return float(energy_corrections([structure], HULL_SCALE)[0])


def correction_note(structure, scheme: str = "mp") -> str:
    """One line for the ``dft_mp_correction`` column: ``"none"`` when MP corrects nothing in
    the composition (GPAW and MP / MLIP numbers compare as they are), else what was done."""
    from matgen.dft._settings import CORRECTION_SCHEMES

    if scheme not in CORRECTION_SCHEMES:
        raise ValueError(f"unknown DFT correction scheme {scheme!r}; one of {CORRECTION_SCHEMES}")
    if not hasattr(structure, "composition"):
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(structure)
    corr = hull_scale_correction(structure)
    u, _ = mp_hubbard([el.symbol for el in structure.composition.elements])
    if math.isnan(corr):
        return "MP's correction scheme rejects this composition: not comparable with MP/MLIP"
    if corr == 0.0 and not u:
        return "none"
    plus_u = ", ".join(f"{el} U={v:g} eV" for el, v in sorted(u.items()))
    what = f"MP legacy hull-scale correction {corr:+.3f} eV/atom" + (
        f"; PBE+U ({plus_u})" if u else ""
    )
    if scheme == "mp":
        return f"{what}: applied (GPAW on the MP hull's scale)"
    return f"{what}: not applied (plain PBE), not comparable with MP/MLIP numbers"
