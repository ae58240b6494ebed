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
        relax: relax cell and positions (ASE BFGS on a ``FrechetCellFilter``).
        fmax: relaxation stop, eV/Å (the filter's cell forces included).
        max_relax_steps: relaxation steps before a labelled failure.
        time_limit_s: wall-clock limit of one calculation (relaxation included); the worker
            process is killed at the limit and the result is a labelled failure.
        magmoms: initial moments of the elements that make a calculation spin-polarised.
        threads: BLAS / OpenMP threads of the worker process (1: one core per calculation).
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

    def magmom_of(self, symbol: str) -> float:
        """Initial moment of ``symbol`` (0.0: the element is not magnetic here)."""
        return dict(self.magmoms).get(symbol, 0.0)

    def physics(self) -> dict[str, Any]:
        """The settings that change the numbers (not the time limit or thread count)."""
        d = dataclasses.asdict(self)
        for k in ("time_limit_s", "threads"):
            d.pop(k)
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
