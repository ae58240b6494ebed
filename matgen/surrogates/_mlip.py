"""Machine-learned interatomic potentials (MLIPs) behind one small interface.

CHGNet (:mod:`~matgen.surrogates._chgnet`) and SevenNet (:mod:`~matgen.surrogates._sevennet`:
SevenNet-l3i5 by default, SevenNet-0 as ``sevennet-0``); both ship their weights inside their
wheels, so they load offline, and both run batched (one forward for many structures) under
the relaxer. This module holds what they share: the interface, :func:`load_mlip`, the output
checks and the Materials Project energy corrections that put MLIP energies on the MP reference
hull's scale (:data:`HULL_SCALE`, MP's legacy corrections, :func:`to_hull_scale`); periodic
neighbour lists are in :mod:`~matgen.surrogates._neighbours`.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Structure

#: The MLIP of ``matgen score``, campaigns and :func:`score_structures` when none is named;
#: chosen by the WBM discovery benchmark (README, "Scoring: which MLIP"): SevenNet-l3i5, the
#: only one past F1 0.75 on 1,000 WBM structures (0.762 as given; SevenNet-0 0.728).
DEFAULT_MLIP = "sevennet"

#: The SevenNet checkpoint behind each SevenNet name of :func:`load_mlip` (both in the wheel).
SEVENNET_CHECKPOINTS = {"sevennet": "7net-l3i5", "sevennet-0": "7net-0"}

#: The names :func:`load_mlip` knows: ``sevennet`` (SevenNet-l3i5, the default, most accurate),
#: ``sevennet-0`` (SevenNet-0, 2.6x less CPU time) and ``chgnet`` (CHGNet, 10x less; measured
#: in ``benchmarks/results/score_cost_cpu_mlips.json``).
MLIP_NAMES = ("chgnet", "sevennet", "sevennet-0")


def mlip_version(name: str) -> str:
    """The MLIP a name loads, as recorded in versions: ``sevennet=7net-l3i5``, ``chgnet``. The
    name ``sevennet`` meant SevenNet-0 before 2026-12-03, so stored versions carry the checkpoint."""
    key = name.strip().lower()
    ck = SEVENNET_CHECKPOINTS.get(key)
    return f"{key}={ck}" if ck else key

#: 1 GPa in eV/Å^3.
GPA_TO_EV_A3 = 1.0 / 160.21766208


@dataclass
class MLIPOutput:
    """Energies, forces and stresses of a batch of B structures (failed ones are NaN).

    Fields:
        energy_per_atom: ``(B,)`` eV/atom.
        forces: ``(N, 3)`` eV/Å, atoms of all structures concatenated in input order.
        stress: ``(B, 3, 3)`` eV/Å^3, ASE sign convention (``(1/V) dE/dstrain``).
        errors: ``B`` entries, ``None`` or a one-line reason the structure failed.
        fresh: ``B`` flags, False where a cached neighbour graph was reused (None: all fresh).
    """

    energy_per_atom: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    errors: list[str | None]
    fresh: list[bool] | None = None


@runtime_checkable
class MLIP(Protocol):
    """What the relaxer and scorer need from an interatomic potential."""

    name: str
    device: torch.device

    def predict(self, structures: list[Structure], compute_stress: bool = True) -> MLIPOutput:
        """Energies, forces (and stresses) of ``structures`` in one batched forward."""
        ...

    def ase_calculator(self) -> Calculator:
        """An ASE calculator for the same model (one-at-a-time reference path)."""
        ...


def energies_per_atom(mlip: MLIP, structures: list[Structure], batch_size: int = 64
                      ) -> list[float]:
    """Single-point energy per atom (eV) of each structure, in batched forwards of
    ``batch_size``; NaN where the MLIP fails on a structure."""
    out: list[float] = []
    for lo in range(0, len(structures), batch_size):
        res = mlip.predict(list(structures[lo:lo + batch_size]), compute_stress=False)
        out.extend(float(e) for e in res.energy_per_atom.detach().cpu().tolist())
    return out


def energy_function(name: str, device: str | torch.device | None = "auto"):
    """``structures -> energies per atom`` (:func:`energies_per_atom`) of the MLIP ``name``,
    loaded on its first call (the name is checked now).

    Raises:
        ValueError: an unknown MLIP name (one line naming the known ones).
    """
    if name.lower() not in MLIP_NAMES:
        raise _unknown(name)
    loaded: list[MLIP] = []

    def energies(structures: list[Structure]) -> list[float]:
        if not loaded:
            loaded.append(load_mlip(name, device))
        return energies_per_atom(loaded[0], structures)

    return energies


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def nan_outputs(n_at: list[int]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """NaN energies ``(B,)``, forces (one ``(n, 3)`` per structure) and stresses ``(B, 3, 3)``
    for ``B`` structures of ``n_at`` atoms, filled in where a structure is computed."""
    b = len(n_at)
    energy = torch.full((b,), math.nan, dtype=torch.float64)
    forces = [torch.full((n, 3), math.nan, dtype=torch.float64) for n in n_at]
    stress = torch.full((b, 3, 3), math.nan, dtype=torch.float64)
    return energy, forces, stress


def fill_outputs(outputs: tuple, ok: list[int], n_at: list[int], e_per_atom: torch.Tensor,
                 f_all: torch.Tensor, s_all: torch.Tensor | None) -> None:
    """Copy a backend's batched results (structures ``ok`` only: energies per atom ``(K,)``,
    forces ``(sum n, 3)``, stresses ``(K, 3, 3)`` or None) into the ``nan_outputs`` slots."""
    energy, forces, stress = outputs
    f_split = torch.split(f_all, [n_at[i] for i in ok])
    for k, i in enumerate(ok):
        energy[i] = e_per_atom[k]
        forces[i] = f_split[k]
        if s_all is not None:
            stress[i] = s_all[k]


def _output(energy, forces: list, stress, errors: list, fresh: list, compute_stress: bool):
    """:class:`MLIPOutput` with a reason in ``errors`` wherever an output is not finite."""
    for i in range(len(errors)):
        if errors[i] is None:
            finite = bool(torch.isfinite(energy[i])) and bool(torch.isfinite(forces[i]).all())
            if compute_stress:
                finite = finite and bool(torch.isfinite(stress[i]).all())
            if not finite:
                errors[i] = "non-finite energy, forces or stress"
    return MLIPOutput(
        energy, torch.cat(forces) if forces else torch.zeros(0, 3), stress, errors, fresh
    )


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:200]


#: The energy scale of the MP reference hull (:meth:`~matgen.surrogates.ConvexHull.from_mp`):
#: Matbench ``mp_e_form`` holds MP formation energies with MP's *legacy* corrections
#: (pymatgen's ``MaterialsProjectCompatibility``, 2018 fit), not MP2020's. Checked against
#: MP-20 / MPTS-52 (MP2020 scale) formulas: see ``benchmarks/results/hull_scale_check_hullscale
#: .json``. Score columns, the SUN metrics and campaign oracles put MLIP energies on it.
HULL_SCALE = "mp_legacy"

#: Energy scales an MLIP's energies can be on (its ``energy_scale`` attribute): uncorrected
#: PBE/PBE+U (MPtrj's raw DFT energies: SevenNet), MP2020-corrected (CHGNet, trained on
#: corrected MPtrj energies), or already the hull's.
ENERGY_SCALES = ("raw", "mp2020", HULL_SCALE)

#: eV/atom: MP's raw GGA energies of the N2, F2, Cl2 and H2 reference phases (the 2023 MP
#: elemental reference entries of ``hull_refs``, also ``matgen/assets/hull/elemental_energies
#: .json``) minus the fitted gas energies MP's legacy scheme used as their references
#: (``CompoundEnergies`` of pymatgen's ``MPCompatibility.yaml``). The legacy scheme corrected
#: these elements through their elemental references, not per compound, so in a compound their
#: shift applies whatever their oxidation state (nitrates and hydroxides too).
LEGACY_GAS_SHIFTS = {
    "N": -8.336494925 - -7.95247218762,
    "F": -1.9114789675 - -1.42055013381,
    "Cl": -1.84853666 - -1.25385097674,
    "H": -3.392726045 - -3.23973666138,
}


def mp_hubbard_u(elements) -> dict[str, float]:
    """``{element: U eV}`` where MP's input set runs PBE+U (an oxide or fluoride of Co, Cr, Fe,
    Mn, Mo, Ni, V, W: the most electronegative of the pymatgen ``elements`` decides), else {}."""
    anion = max(elements, key=lambda el: el.X).symbol
    u = _mp2020().u_settings.get(anion, {})
    return {el.symbol: float(u[el.symbol]) for el in elements if u.get(el.symbol, 0)}


def energy_corrections(structures: list[Structure], scheme: str = HULL_SCALE) -> np.ndarray:
    """Materials Project energy corrections of each structure, eV/atom (NaN: rejected).

    ``scheme``: ``"mp2020"`` (``MaterialsProject2020Compatibility``: anion corrections for O,
    S, F, Cl, Br, I, N, Se, Si, Sb, Te, H and the GGA/GGA+U mixing) or ``"mp_legacy"`` (the
    hull's scale, :data:`HULL_SCALE`: ``MaterialsProjectCompatibility``'s oxide / peroxide /
    superoxide and sulfide corrections and its GGA/GGA+U mixing values, no correction for Se,
    Te, Br, I, Sb or Si, and for N, F, Cl and H in compounds the :data:`LEGACY_GAS_SHIFTS`).
    Corrections do not depend on the energy. GGA+U is assumed where MP's input set would use it
    (an oxide or fluoride with Co, Cr, Fe, Mn, Mo, Ni, V or W, at MP's U values); both schemes
    see the same entry. Pure elements get none.
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    if scheme not in ("mp2020", HULL_SCALE):
        raise ValueError(f"unknown correction scheme {scheme!r}; 'mp2020' or {HULL_SCALE!r}")
    compat = _mp2020() if scheme == "mp2020" else _mp_legacy()
    out = np.full(len(structures), np.nan)
    for i, s in enumerate(structures):
        comp = s.composition
        hub = mp_hubbard_u(comp.elements)
        entry = ComputedStructureEntry(s, -5.0 * len(s), parameters={
            "run_type": "GGA+U" if hub else "GGA", "hubbards": hub, "is_hubbard": bool(hub)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                adjustments = compat.get_adjustments(entry)
            except Exception:  # noqa: BLE001 - a rejected entry is per structure (NaN)
                adjustments = None
        if adjustments is None:
            continue
        out[i] = sum(a.value for a in adjustments) / len(s)
        if scheme == HULL_SCALE and len(comp.elements) > 1:
            out[i] += sum(comp.get_atomic_fraction(el) * LEGACY_GAS_SHIFTS[el.symbol]
                          for el in comp.elements if el.symbol in LEGACY_GAS_SHIFTS)
    return out


def to_hull_scale(structures: list[Structure], energies_per_atom, scale: str = "raw"
                  ) -> np.ndarray:
    """Energies per atom moved from ``scale`` onto the MP reference hull's (:data:`HULL_SCALE`).

    ``"raw"`` (uncorrected PBE/PBE+U: SevenNet): plus the hull scale's corrections of
    :func:`energy_corrections`; ``"mp2020"`` (CHGNet): minus MP2020's corrections, plus the
    hull scale's, both of the same entry; ``"mp_legacy"``: unchanged. A structure a scheme
    rejects, or a non-finite energy, gives NaN. Without this, MP2020-scale energies of Se, Te,
    Br, I and Sb compounds sat up to ~0.3 eV/atom too low against the hull (issue #17).
    """
    e = np.asarray([float(x) for x in energies_per_atom], dtype=float)
    if len(e) != len(structures):
        raise ValueError(f"{len(structures)} structures but {len(e)} energies")
    if scale not in ENERGY_SCALES:
        raise ValueError(f"unknown energy scale {scale!r}; one of {ENERGY_SCALES}")
    if scale == HULL_SCALE:
        return e
    ok = np.isfinite(e)
    out = np.full(len(e), np.nan)
    sub = [s for s, k in zip(structures, ok, strict=True) if k]
    shift = energy_corrections(sub, HULL_SCALE)
    if scale == "mp2020":
        shift = shift - energy_corrections(sub, "mp2020")
    out[ok] = e[ok] + shift
    return out


def mlip_energy_scale(mlip) -> str:
    """The :data:`ENERGY_SCALES` entry of an MLIP's energies: its ``energy_scale`` attribute,
    ``"mp2020"`` without one (as CHGNet and most MPtrj-trained MLIPs)."""
    return str(getattr(mlip, "energy_scale", "mp2020"))


def mp2020_corrected(structures: list[Structure], energies_per_atom) -> np.ndarray:
    """Energies per atom plus the MP2020 corrections (:func:`energy_corrections` with
    ``"mp2020"``; NaN where rejected or not finite). Not the MP hull's scale: for that, see
    :func:`to_hull_scale`. Measured on 120 WBM structures without any correction: SevenNet-0
    formation energies of oxides were 0.56 eV/atom too high.
    """
    e = np.asarray([float(x) for x in energies_per_atom], dtype=float)
    return e + energy_corrections(list(structures), "mp2020")


@functools.lru_cache(maxsize=1)
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


@functools.lru_cache(maxsize=1)
def _mp_legacy():
    """MP's legacy ``MaterialsProjectCompatibility`` without its POTCAR check (the entries are
    MLIP energies) and without its gas correction (it only resets the energies of the N2, F2,
    Cl2 and H2 phases themselves; :data:`LEGACY_GAS_SHIFTS` carries its effect on compounds).
    Built from pymatgen's classes directly: the class itself is deprecated and has no
    ``check_potcar`` switch."""
    from pymatgen.entries.compatibility import (
        MODULE_DIR,
        AnionCorrection,
        CorrectionsList,
        UCorrection,
    )
    from pymatgen.io.vasp.sets import MPRelaxSet

    config = f"{MODULE_DIR}/MPCompatibility.yaml"
    return CorrectionsList([AnionCorrection(config), UCorrection(config, MPRelaxSet, "Advanced")])


def load_mlip(
    name: str = DEFAULT_MLIP, device: str | torch.device | None = "auto", **kwargs
) -> MLIP:
    """Build an MLIP by name (:data:`MLIP_NAMES`): ``sevennet`` (SevenNet-l3i5), ``sevennet-0``
    (SevenNet-0) or ``chgnet``; for a SevenNet, ``model=`` picks another checkpoint (e.g.
    ``7net-mf-0`` with ``modal=``)."""
    key = name.lower()
    if key == "chgnet":
        from matgen.surrogates._chgnet import CHGNetMLIP

        return CHGNetMLIP(device=device, **kwargs)
    if key in SEVENNET_CHECKPOINTS:
        from matgen.surrogates._sevennet import SevenNetMLIP

        kwargs.setdefault("model", SEVENNET_CHECKPOINTS[key])
        return SevenNetMLIP(device=device, **kwargs)
    raise _unknown(name)


def _unknown(name: str) -> ValueError:
    """The one-line error for an MLIP name outside :data:`MLIP_NAMES`."""
    return ValueError(f"unknown MLIP {name!r}; choose one of {', '.join(MLIP_NAMES)}")
