"""One GPAW calculation in its own process: ``python -m matgen.dft._worker JOB.json OUT.json``.

The service starts this process per calculation so that a time limit can kill it outright (a
single SCF cycle can outlast any cooperative check) and a crash in GPAW's C code cannot take the
caller with it. The job file holds the structure and the settings; the worker writes one JSON
result (atomically) and exits 0, whatever the outcome: a failure is a ``status``, never a number.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# statuses a finished worker can report (the service adds "timeout" and "crashed")
OK = "ok"
SCF_NOT_CONVERGED = "scf_not_converged"
RELAX_NOT_CONVERGED = "relax_not_converged"
ERROR = "error"


def _calculator(settings: dict[str, Any], spinpol: bool, txt: str | None, ecut=None):
    from gpaw import GPAW, PW

    name, width = settings["smearing"]
    # PBE+U (Dudarev) on the d states of the named elements: GPAW's ":d,<U eV>" setup strings
    extra = {}
    if settings.get("hubbard_u"):
        extra["setups"] = {el: f":d,{u:g}" for el, u in settings["hubbard_u"]}
    return GPAW(
        mode=PW(ecut or settings["ecut_ev"]),
        xc=settings["xc"],
        kpts={"density": settings["kpt_density"], "gamma": True},
        occupations={"name": name, "width": width},
        convergence={"energy": settings["scf_energy_tol"]},
        maxiter=settings["scf_maxiter"],
        spinpol=spinpol,
        txt=txt,
        **extra,
    )


def _structure(atoms) -> dict[str, Any]:
    return {
        "numbers": atoms.numbers.tolist(),
        "cell": atoms.cell.array.tolist(),
        "positions": atoms.positions.tolist(),
    }


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run the calculation that ``job`` describes and return the result record (no raising)."""
    import numpy as np
    from ase import Atoms

    settings = job["settings"]
    s = job["structure"]
    atoms = Atoms(numbers=s["numbers"], cell=s["cell"], positions=s["positions"], pbc=True)
    magmoms = dict(map(tuple, settings["magmoms"]))
    init = np.array([magmoms.get(sym, 0.0) for sym in atoms.get_chemical_symbols()])
    spinpol = bool(np.any(init != 0.0))
    if spinpol:
        atoms.set_initial_magnetic_moments(init)
    # a relaxation at its own (higher) cutoff: the stress needs it; the energy is the final SCF's
    atoms.calc = _calculator(settings, spinpol, job.get("txt"), settings.get("relax_ecut_ev"))
    record: dict[str, Any] = {"spin_polarised": spinpol, "relax_steps": 0}
    t0 = time.perf_counter()
    try:
        from gpaw import KohnShamConvergenceError

        try:
            if settings["relax"]:
                from ase.filters import FrechetCellFilter
                from ase.optimize import BFGS

                opt = BFGS(FrechetCellFilter(atoms), logfile=None)
                converged = bool(opt.run(fmax=settings["fmax"], steps=settings["max_relax_steps"]))
                record["relax_steps"] = int(opt.nsteps)
                record["relax_energy_ev"] = float(atoms.get_potential_energy())
                # A fresh SCF at the relaxed cell: its plane-wave basis belongs to that cell (the
                # relaxation's was set up for the starting one), as MP's final static run does.
                if spinpol:
                    atoms.set_initial_magnetic_moments(atoms.get_magnetic_moments())
                atoms.calc = _calculator(settings, spinpol, job.get("txt"))
            else:
                converged = True
            energy = float(atoms.get_potential_energy())
        except KohnShamConvergenceError as exc:  # TooFewBandsError is a subclass
            record.update(status=SCF_NOT_CONVERGED, message=f"{type(exc).__name__}: {exc}")
            return record
        record["energy_ev"] = energy
        record["energy_per_atom"] = energy / len(atoms)
        forces = atoms.get_forces()
        record["max_force"] = float(np.linalg.norm(forces, axis=1).max())
        if settings["relax"]:
            record["max_stress"] = float(np.abs(atoms.get_stress()).max())
        record["magmom"] = float(atoms.get_magnetic_moment()) if spinpol else 0.0
        record["relaxed"] = _structure(atoms)
        if converged:
            record.update(status=OK, message="")
        else:
            record.update(
                status=RELAX_NOT_CONVERGED,
                message=f"not relaxed to fmax {settings['fmax']} in {record['relax_steps']} steps",
            )
    except Exception as exc:  # noqa: BLE001 - any GPAW/ASE failure becomes a labelled result
        record.update(status=ERROR, message=f"{type(exc).__name__}: {exc}")
        record["traceback"] = traceback.format_exc(limit=5)
    finally:
        record["compute_s"] = time.perf_counter() - t0
    return record


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the process that started it dies, so that a killed
    campaign leaves no orphan calculation running (its finished ones are in the cache)."""
    parent = int(os.environ.get("MATGEN_DFT_PARENT_PID", "0"))
    if not parent:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    _die_with_parent()
    job_path, out_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    threads = str(job["settings"].get("threads", 1))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    record = run_job(job)
    from matgen._files import atomic_write_text

    atomic_write_text(out_path, json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
