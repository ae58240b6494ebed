"""The DFT oracle: GPAW (PBE, plane waves) calculations that verify MLIP-judged candidates.

Optional: needs the ``dft`` extra (``bash scripts/install_dft.sh``); importing this package does
not import GPAW, only running a calculation does (in a worker process).

>>> from matgen.dft import DFTService, ElementalReferences
>>> service = DFTService("runs/dft_cache")            # convergence-tested settings
>>> result = service.run(structure)                  # relax + energy, cached on disk
>>> refs = ElementalReferences(service)              # GPAW elemental references, same cache
>>> refs.formation_energy_per_atom(result)           # eV/atom; raises if a calculation failed
>>> DFTHull(refs).e_above_hull(result)               # + competing phases, same cache

Public API:
    DFTSettings: cutoff, k-point density, smearing, SCF and relaxation limits, time limit.
    DFTService / DFTResult: one calculation per worker process through an on-disk cache;
        a failure is a labelled ``status`` (``scf_not_converged``, ``timeout``, ...), never a number.
        ``with_relax(service, relax)``: the same service relaxing (or not), same cache.
    MP20Index / ReferenceStructures / ElementalReferences: elemental ground states from the MP
        data and their GPAW energies; formation energy per atom on that one scale.
    DFTHull / DFTHullResult: energy above the GPAW hull of the competing phases that MP's hull
        names (structures from MP-20), signed, with what was (not) computed.
    verify / DFTVerifier: all of it for a list of candidates, one flat ``dft_*`` row each (what
        a campaign oracle or ``matgen score`` adds).
    add_dft_scores / rank_for_dft / DFT_SCORE_COLUMNS: verify the best rows of a score table
        (``matgen score --oracle dft --top K``), with a judge column per stability number.
    mp_hubbard / hull_scale_correction / correction_note: MP's PBE+U and the MP hull scale's
        corrections of a composition (the ``"mp"`` scheme of DFTSettings applies both), and a
        line saying which scale a GPAW number is on.
"""

from __future__ import annotations

from matgen.dft._corrections import correction_note, hull_scale_correction, mp_hubbard
from matgen.dft._hull import DFTHull, DFTHullResult
from matgen.dft._references import (
    ElementalReferences,
    FormationEnergyError,
    MP20Index,
    ReferenceStructure,
    ReferenceStructures,
)
from matgen.dft._scores import DFT_SCORE_COLUMNS, add_dft_scores, rank_for_dft
from matgen.dft._service import (
    CRASHED,
    NO_SETUP,
    TIMEOUT,
    DFTResult,
    DFTService,
    missing_setups,
    structure_key,
    with_relax,
)
from matgen.dft._settings import (
    CONVERGED_ECUT_EV,
    CONVERGED_KPT_DENSITY,
    CORRECTION_SCHEMES,
    DEFAULT_MAGMOMS,
    DFTSettings,
)
from matgen.dft._verify import JUDGE, DFTVerifier, verify
from matgen.dft._worker import ERROR, OK, RELAX_NOT_CONVERGED, SCF_NOT_CONVERGED


def gpaw_available() -> bool:
    """Whether the ``dft`` extra (GPAW and its PAW setups) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("gpaw", "gpaw_data"))


__all__ = [
    "CONVERGED_ECUT_EV",
    "CONVERGED_KPT_DENSITY",
    "CORRECTION_SCHEMES",
    "CRASHED",
    "DEFAULT_MAGMOMS",
    "DFT_SCORE_COLUMNS",
    "ERROR",
    "JUDGE",
    "NO_SETUP",
    "OK",
    "RELAX_NOT_CONVERGED",
    "SCF_NOT_CONVERGED",
    "TIMEOUT",
    "DFTHull",
    "DFTHullResult",
    "DFTResult",
    "DFTService",
    "DFTSettings",
    "DFTVerifier",
    "ElementalReferences",
    "FormationEnergyError",
    "MP20Index",
    "ReferenceStructure",
    "ReferenceStructures",
    "add_dft_scores",
    "correction_note",
    "gpaw_available",
    "hull_scale_correction",
    "missing_setups",
    "mp_hubbard",
    "rank_for_dft",
    "structure_key",
    "verify",
    "with_relax",
]
