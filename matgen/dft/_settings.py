"""Numerical settings of the DFT oracle: one frozen dataclass, hashed into every cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Initial magnetic moments (Bohr magnetons per atom) for elements that get a spin-polarised
# calculation; everything else runs spin-paired (half the cost). The 3d magnets and the f-block
# (4f / 5f) are the elements whose ground states in MP-style PBE runs carry moments.
DEFAULT_MAGMOMS: dict[str, float] = {
    "Cr": 4.0, "Mn": 4.0, "Fe": 3.0, "Co": 2.0, "Ni": 1.0,
    **{el: 5.0 for el in ("Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er",
                          "Tm", "Yb", "U", "Np", "Pu")},
}  # fmt: skip

# Chosen by benchmarks/dft_convergence.py (benchmarks/results/dft_convergence.json): the cheapest
# cutoff and k-point density whose formation energies are within 5 meV/atom of the converged
# ones for every test system. tests/dft/test_settings.py checks these agree with that file.
CONVERGED_ECUT_EV = 400.0
CONVERGED_KPT_DENSITY = 4.0
# A relaxation runs at this multiple of the cutoff (its final SCF at the cutoff itself), as
# MP relaxes at 1.3x the largest ENMAX: the stress converges more slowly than the energy. K's
# PAW dataset at 400 eV has a 0.6 GPa Pulay stress (0.04 GPa at 520), which shrank the relaxed
# bcc K cell from PBE's 73 to 63 A^3 per atom (measured 2026-12-05, README DFT section).
RELAX_ECUT_FACTOR = 1.3

#: How GPAW energies are put on the scale of matgen's MP hull (and so of the MLIP scores):
#: ``"mp"``: PBE+U (Dudarev, on d states) where the Materials Project's input set uses it (an
#: oxide or fluoride of Co, Cr, Fe, Mn, Mo, Ni, V, W, at MP's U values and starting moments),
#: then the hull scale's energy corrections (:func:`matgen.dft.hull_scale_correction`) on every
#: compound; ``"none"``: plain PBE everywhere, no corrections (GPAW's own scale). The two agree
#: wherever MP corrects nothing (intermetallics, alloys; on the hull's legacy scale also
#: bromides, iodides, selenides, tellurides, antimonides).
CORRECTION_SCHEMES = ("mp", "none")


@dataclass(frozen=True)
class DFTSettings:
    """How one DFT calculation is run (GPAW, PBE, plane waves).

    Attributes:
        ecut_ev: plane-wave cutoff, eV.
        kpt_density: Monkhorst-Pack k-point density, points per reciprocal-space Å^-1
            (Γ-centred; GPAW's ``kpts={'density': ...}``).
        xc: exchange-correlation functional (PBE, as the Materials Project's GGA runs).
        smearing: ``(name, width in eV)`` of the occupation smearing. Cold smearing
            (Marzari-Vanderbilt) keeps the energy close to the zero-width one at a width that
            lets a coarse k-point mesh converge metals; the energy reported is GPAW's
            extrapolation to zero width.
        scf_energy_tol: SCF convergence on the energy, eV per valence electron.
        scf_maxiter: SCF iterations before the calculation is a labelled failure.
        relax: relax cell and positions (ASE BFGS on a ``FrechetCellFilter``) at
            ``RELAX_ECUT_FACTOR`` times the cutoff, then one SCF at the cutoff.
        fmax: relaxation stop, eV/Å (the filter's cell forces included).
        max_relax_steps: relaxation steps before a labelled failure.
        time_limit_s: wall-clock limit of one calculation (relaxation included); the worker
            process is killed at the limit and the result is a labelled failure.
        magmoms: initial moments of the elements that make a calculation spin-polarised.
        threads: BLAS / OpenMP threads of the worker process (1: one core per calculation).
        corrections: one of :data:`CORRECTION_SCHEMES`; with ``"mp"`` the service computes
            each structure at :meth:`for_structure`'s settings.
        hubbard_u: ``(element, U in eV)`` of a PBE+U calculation (Dudarev, d states); set per
            structure by :meth:`for_structure`, empty for plain PBE.
    """

    ecut_ev: float = CONVERGED_ECUT_EV
    kpt_density: float = CONVERGED_KPT_DENSITY
    xc: str = "PBE"
    smearing: tuple[str, float] = ("marzari-vanderbilt", 0.1)
    scf_energy_tol: float = 1e-5
    scf_maxiter: int = 200
    relax: bool = True
    fmax: float = 0.05
    max_relax_steps: int = 60
    time_limit_s: float = 1800.0
    magmoms: tuple[tuple[str, float], ...] = field(
        default_factory=lambda: tuple(sorted(DEFAULT_MAGMOMS.items()))
    )
    threads: int = 1
    corrections: str = "mp"
    hubbard_u: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        if self.corrections not in CORRECTION_SCHEMES:
            raise ValueError(
                f"unknown DFT correction scheme {self.corrections!r}; one of {CORRECTION_SCHEMES}"
            )

    def for_structure(self, symbols) -> DFTSettings:
        """The settings one structure (its element symbols) is computed at: under ``"mp"``,
        with MP's U values and starting moments where MP runs PBE+U; else these settings."""
        if self.corrections != "mp":
            return self
        from matgen.dft._corrections import mp_hubbard

        if set(map(str, symbols)) == {"O"} and not self.magmom_of("O"):
            # MP's O2 reference is spin-polarised: the triplet molecule, 1 muB per O
            return self.replace(magmoms=tuple(sorted((dict(self.magmoms) | {"O": 1.0}).items())))
        u, magmoms = mp_hubbard(symbols)
        if not u:
            return self.replace(hubbard_u=())
        moms = dict(self.magmoms) | magmoms
        return self.replace(
            hubbard_u=tuple(sorted(u.items())), magmoms=tuple(sorted(moms.items()))
        )

    def magmom_of(self, symbol: str) -> float:
        """Initial moment of ``symbol`` (0.0: the element is not magnetic here)."""
        return dict(self.magmoms).get(symbol, 0.0)

    def physics(self) -> dict[str, Any]:
        """The settings that change the numbers (not the time limit or thread count)."""
        d = dataclasses.asdict(self)
        # the scheme only picks hubbard_u (per structure) and post-processes energies; plain
        # PBE keeps the key it had before U existed, so cached calculations stay valid
        for k in ("time_limit_s", "threads", "corrections"):
            d.pop(k)
        if self.relax:  # static calculations keep their keys
            d["relax_ecut_ev"] = float(self.ecut_ev * RELAX_ECUT_FACTOR)
        if self.hubbard_u:
            d["hubbard_u"] = [[el, float(u)] for el, u in self.hubbard_u]
        else:
            d.pop("hubbard_u")
        for k in ("ecut_ev", "kpt_density", "scf_energy_tol", "fmax"):
            d[k] = float(d[k])  # 400 and 400.0 are one setting (and one cache key)
        d["smearing"] = [self.smearing[0], float(self.smearing[1])]
        d["magmoms"] = [list(m) for m in self.magmoms]
        return d

    def digest(self) -> str:
        """A short hash of :meth:`physics`, part of every cache key."""
        blob = json.dumps(self.physics(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> DFTSettings:
        return dataclasses.replace(self, **changes)
