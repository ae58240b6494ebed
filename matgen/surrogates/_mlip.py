"""Machine-learned interatomic potentials (MLIPs) behind one small interface.

CHGNet (:mod:`~matgen.surrogates._chgnet`) and SevenNet (:mod:`~matgen.surrogates._sevennet`,
SevenNet-0 by default); both ship their weights inside their wheels, so they load offline, and
both run batched (one forward for many structures) under the relaxer. This module holds what
they share: the interface, :func:`load_mlip`, the output checks and the MP2020 corrections;
periodic neighbour lists are in :mod:`~matgen.surrogates._neighbours`.
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
#: chosen by the WBM discovery benchmark (README, "Scoring: which MLIP").
DEFAULT_MLIP = "sevennet"

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


def mp2020_corrected(structures: list[Structure], energies_per_atom) -> np.ndarray:
    """Energies per atom with the MP2020 anion and GGA/GGA+U mixing corrections applied.

    For an MLIP trained on MPtrj's *raw* DFT energies (SevenNet-0): its energies become
    comparable with MP formation energies and hulls only after the same corrections MP applies
    to its own DFT entries. GGA+U is assumed where MP's input set would use it (an oxide or
    fluoride with Co, Cr, Fe, Mn, Mo, Ni, V or W, at MP's U values). A structure the scheme
    rejects, or a non-finite energy, gives NaN. Measured on 120 WBM structures without it:
    SevenNet-0 formation energies of oxides were 0.56 eV/atom too high, CHGNet's were not
    (CHGNet predicts corrected energies).
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    compat = _mp2020()
    out = np.full(len(structures), np.nan)
    for i, (s, e) in enumerate(zip(structures, energies_per_atom, strict=True)):
        e = float(e)
        if not math.isfinite(e):
            continue
        comp = s.composition
        anion = max(comp.elements, key=lambda el: el.X).symbol
        u = compat.u_settings.get(anion, {})
        hub = {el.symbol: float(u[el.symbol]) for el in comp.elements if u.get(el.symbol, 0)}
        entry = ComputedStructureEntry(
            s,
            e * len(s),
            parameters={
                "run_type": "GGA+U" if hub else "GGA",
                "hubbards": hub,
                "is_hubbard": bool(hub),
            },
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                done = compat.process_entry(entry, clean=True)
            except Exception:  # noqa: BLE001 - a rejected entry is per structure
                done = None
        if done is not None:
            out[i] = done.energy / len(s)
    return out


@functools.lru_cache(maxsize=1)
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def load_mlip(
    name: str = DEFAULT_MLIP, device: str | torch.device | None = "auto", **kwargs
) -> MLIP:
    """Build an MLIP by name: ``chgnet`` or ``sevennet`` (SevenNet-0; ``model=`` picks
    another SevenNet checkpoint, e.g. ``7net-l3i5``)."""
    key = name.lower()
    if key == "chgnet":
        from matgen.surrogates._chgnet import CHGNetMLIP

        return CHGNetMLIP(device=device, **kwargs)
    if key in ("sevennet", "7net"):
        from matgen.surrogates._sevennet import SevenNetMLIP

        return SevenNetMLIP(device=device, **kwargs)
    raise ValueError(f"unknown MLIP {name!r}; choose 'chgnet' or 'sevennet'")
