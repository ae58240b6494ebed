"""The DFT calculator service: cache lookup, one worker process per calculation, time limits.

Every finished calculation (a success or a labelled failure of the calculation itself) is
written to the cache folder as one JSON file, atomically, before the next one starts: a job
killed at any moment loses at most the calculation that was running. A timed-out or crashed
worker is reported but not cached, so a later run with a longer limit tries again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matgen._files import atomic_write_text
from matgen.dft._settings import DFTSettings
from matgen.dft._worker import OK

TIMEOUT = "timeout"
CRASHED = "crashed"
NO_SETUP = "no_paw_setup"  # an element gpaw-data has no PAW dataset for (Tc, Po, Ac, ...)
# bump when the record format or the way a calculation is run changes the numbers
RECORD_VERSION = 1


@dataclass(frozen=True)
class DFTResult:
    """One DFT calculation's outcome.

    ``energy_ev`` / ``energy_per_atom`` are set only when every SCF converged; ``status`` says
    what happened: ``ok``, ``scf_not_converged``, ``relax_not_converged`` (the last SCF converged
    but the structure did not relax within ``max_relax_steps``: energy kept, not ``ok``),
    ``error`` (GPAW or ASE raised), ``timeout`` or ``crashed`` (the worker was killed / died),
    ``no_paw_setup`` (gpaw-data has no PAW dataset for an element: nothing was run).
    """

    key: str
    status: str
    formula: str
    natoms: int
    message: str = ""
    energy_ev: float | None = None
    energy_per_atom: float | None = None
    relaxed: dict[str, Any] | None = None  # numbers, cell (Å), positions (Å)
    magmom: float | None = None
    max_force: float | None = None
    max_stress: float | None = None
    spin_polarised: bool = False
    relax_steps: int = 0
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def relaxed_atoms(self):
        """The relaxed structure as ASE Atoms (None when the calculation gave none)."""
        if self.relaxed is None:
            return None
        from ase import Atoms

        return Atoms(
            numbers=self.relaxed["numbers"],
            cell=self.relaxed["cell"],
            positions=self.relaxed["positions"],
            pbc=True,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("from_cache")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], from_cache: bool = False) -> DFTResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}, from_cache=from_cache)


def _as_atoms(structure):
    """ASE Atoms from Atoms or a pymatgen Structure (a copy, without calculator)."""
    from ase import Atoms

    if isinstance(structure, Atoms):
        atoms = structure.copy()
    else:
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = None
    atoms.pbc = True
    return atoms


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("gpaw", "gpaw-data", "ase"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def missing_setups(symbols, xc: str = "PBE") -> list[str]:
    """Elements of ``symbols`` without a ``<symbol>.<xc>`` PAW dataset in gpaw-data (empty when
    gpaw-data is not installed: then GPAW's own error says so)."""
    import importlib.util

    spec = importlib.util.find_spec("gpaw_data")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "setups"
    if not folder.is_dir():
        return []
    return sorted(
        el
        for el in set(symbols)
        if not any((folder / f"{el}.{xc}{ext}").exists() for ext in (".gz", ""))
    )


def structure_key(atoms, settings: DFTSettings, versions: dict[str, str]) -> str:
    """Cache key: the structure (cell and wrapped fractional coordinates to 1e-5), the settings
    that change the numbers, and the GPAW / PAW-data versions."""
    import numpy as np

    frac = np.mod(np.round(atoms.get_scaled_positions(wrap=True), 5), 1.0)
    blob = json.dumps(
        {
            "v": RECORD_VERSION,
            "numbers": atoms.numbers.tolist(),
            "cell": np.round(atoms.cell.array, 5).tolist(),
            "frac": np.round(frac, 5).tolist(),
            "settings": settings.physics(),
            "versions": {k: versions[k] for k in ("gpaw", "gpaw-data")},
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@contextlib.contextmanager
def _key_lock(cache_dir: Path, key: str):
    """An exclusive ``flock`` on ``<cache>/locks/<key>.lock``: two campaign tasks (threads, Ray
    workers on one file system) asking for the same structure run it once; the lock dies with
    its holder, so a killed run never leaves it taken."""
    import fcntl

    folder = cache_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class DFTService:
    """Runs GPAW calculations one at a time, each in its own process, through an on-disk cache.

    Args:
        cache_dir: folder of the cache (one ``<key>.json`` per finished calculation, GPAW text
            logs in ``logs/``). Point it into a campaign's work folder to keep it with the
            campaign store.
        settings: numerical settings (default: the convergence-tested ones).
    """

    def __init__(self, cache_dir: str | os.PathLike, settings: DFTSettings | None = None):
        self.cache_dir = Path(cache_dir)
        self.settings = settings or DFTSettings()
        self.versions = _versions()

    def settings_for(self, atoms) -> DFTSettings:
        """The settings ``atoms`` is computed at (PBE+U where the ``"mp"`` scheme says so)."""
        return self.settings.for_structure(atoms.get_chemical_symbols())

    def key(self, structure) -> str:
        atoms = _as_atoms(structure)
        return structure_key(atoms, self.settings_for(atoms), self.versions)

    def _path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.json"

    def cached(self, structure) -> DFTResult | None:
        """The cached result for ``structure`` under these settings, or None."""
        path = self._path(self.key(structure))
        if not path.exists():
            return None
        return DFTResult.from_dict(json.loads(path.read_text()), from_cache=True)

    def run(self, structure, label: str = "") -> DFTResult:
        """Relax (per the settings) and compute ``structure``; never raises for a failed
        calculation. ``label`` only names the GPAW log file."""
        atoms = _as_atoms(structure)
        settings = self.settings_for(atoms)
        key = structure_key(atoms, settings, self.versions)
        path = self._path(key)
        if path.exists():
            return DFTResult.from_dict(json.loads(path.read_text()), from_cache=True)
        with _key_lock(self.cache_dir, key):  # one run per key, across threads and processes
            if path.exists():  # finished by whoever held the lock
                return DFTResult.from_dict(json.loads(path.read_text()), from_cache=True)
            return self._run_unlocked(atoms, settings, key, path, label)

    def _run_unlocked(
        self, atoms, settings: DFTSettings, key: str, path: Path, label: str
    ) -> DFTResult:
        missing = missing_setups(atoms.get_chemical_symbols(), settings.xc)
        if missing:  # not cached: installing setups later makes it computable
            return DFTResult(
                key=key,
                status=NO_SETUP,
                formula=atoms.get_chemical_formula(mode="metal", empirical=False),
                natoms=len(atoms),
                message=f"no GPAW {settings.xc} PAW dataset for {', '.join(missing)}",
                settings=settings.physics(),
                versions=self.versions,
            )
        record, cacheable = self._compute(atoms, settings, key, label)
        result = DFTResult.from_dict(record)
        if cacheable:
            atomic_write_text(path, json.dumps(result.to_dict(), indent=1))
        return result

    def _compute(self, atoms, settings: DFTSettings, key: str, label: str) -> tuple[dict[str, Any], bool]:
        jobs = self.cache_dir / "jobs"
        logs = self.cache_dir / "logs"
        jobs.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        job_path, out_path = jobs / f"{key}.job.json", jobs / f"{key}.out.json"
        out_path.unlink(missing_ok=True)
        stem = f"{label}_{key}" if label else key
        job = {
            "structure": {
                "numbers": atoms.numbers.tolist(),
                "cell": atoms.cell.array.tolist(),
                "positions": atoms.positions.tolist(),
            },
            "settings": settings.physics() | {"threads": settings.threads},
            "txt": str(logs / f"{stem}.txt"),
        }
        atomic_write_text(job_path, json.dumps(job))
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(settings.threads)
        env["MATGEN_DFT_PARENT_PID"] = str(os.getpid())  # the worker dies with this process
        base: dict[str, Any] = {
            "key": key,
            "formula": atoms.get_chemical_formula(mode="metal", empirical=False),
            "natoms": len(atoms),
            "settings": settings.physics(),
            "versions": self.versions,
        }
        t0 = time.perf_counter()
        # own session: a timeout kills the worker and anything it started, not the caller
        proc = subprocess.Popen(
            [sys.executable, "-m", "matgen.dft._worker", str(job_path), str(out_path)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = proc.communicate(timeout=settings.time_limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            base.update(
                status=TIMEOUT,
                message=f"killed at the time limit of {settings.time_limit_s:g} s",
                wall_s=time.perf_counter() - t0,
            )
            return base, False
        finally:
            job_path.unlink(missing_ok=True)
        base["wall_s"] = time.perf_counter() - t0
        if proc.returncode != 0 or not out_path.exists():
            tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
            base.update(
                status=CRASHED,
                message=f"worker exit code {proc.returncode}: " + " | ".join(tail),
            )
            return base, False
        record = json.loads(out_path.read_text())
        out_path.unlink(missing_ok=True)
        record.pop("traceback", None)
        return base | record, True


def with_relax(service, relax: bool):
    """``service``, or one like it on the same cache folder whose settings relax (or not):
    for a structure whose geometry decides that regardless of the caller's settings (an ASE
    reference crystal at its experimental lattice constant is relaxed, a molecular crystal at
    MP's geometry is not)."""
    if bool(getattr(service.settings, "relax", relax)) == relax:
        return service
    return type(service)(service.cache_dir, service.settings.replace(relax=relax))
