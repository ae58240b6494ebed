"""Verify candidates with DFT: the one call a campaign oracle or ``matgen score`` makes.

``verify(structures)`` relaxes and computes each structure with GPAW, then its formation energy
and energy above the GPAW hull of its chemical system, and returns one flat row per structure
(numbers, or ``None`` with a status saying why not). Everything goes through the on-disk cache,
so a second call (a resumed campaign) recomputes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from matgen.dft._corrections import correction_note
from matgen.dft._hull import DFTHull
from matgen.dft._references import ElementalReferences, MP20Index, ReferenceStructures
from matgen.dft._service import DFTService
from matgen.dft._settings import DFTSettings

JUDGE = "dft:gpaw-pbe"


def _correction_note(structure, scheme: str) -> str:
    """:func:`correction_note` of a pymatgen Structure or ASE Atoms (``"unknown"`` if it
    fails)."""
    try:
        return correction_note(structure, scheme)
    except Exception as exc:  # noqa: BLE001 - a note, never a reason to lose the row
        return f"unknown ({type(exc).__name__})"


class DFTVerifier:
    """The service, elemental references and hull behind :func:`verify`, built once.

    Args:
        cache_dir: the calculations' cache (put it in the campaign's work folder).
        settings: DFT settings (default: the convergence-tested ones).
        data_dir: the datasets root (``hull_refs/``, ``mp20_reduced/``; default
            ``$MATGEN_DATA_DIR``).
        hull: also compute ``e_above_hull`` (relaxes the competing phases: the costly part
            the first time a chemical system is seen).
        service / mp_hull: a ready service (then ``cache_dir`` and ``settings`` are unused) and
            the MP hull that names competing phases (see :class:`DFTHull`).
        phases: structures of competing phases the shared data lack, by formula (relaxed
            before use; see :class:`DFTHull`).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        settings: DFTSettings | None = None,
        data_dir: str | os.PathLike | None = None,
        hull: bool = True,
        service=None,
        mp_hull=None,
        phases: dict | None = None,
    ):
        self.service = service or DFTService(cache_dir, settings)
        self.index = MP20Index(data_dir)
        self.references = ElementalReferences(self.service, ReferenceStructures(self.index))
        self.hull = DFTHull(self.references, self.index, mp_hull, phases) if hull else None

    def verify_one(self, structure, label: str = "") -> dict[str, Any]:
        res = self.service.run(structure, label=label)
        row: dict[str, Any] = {
            "dft_status": res.status,
            "dft_message": res.message,
            "dft_energy_per_atom": res.energy_per_atom if res.ok else None,
            "dft_e_form_per_atom": None,
            "dft_e_above_hull": None,
            "dft_hull_complete": None,
            "dft_competing_phases": None,
            "dft_wall_s": round(res.wall_s, 1),
            "dft_cached": res.from_cache,
            "dft_key": res.key,
            "dft_mp_correction": _correction_note(structure, self.service.settings.corrections),
            "judge": JUDGE,
        }
        if not res.ok:
            return row
        if self.hull is None:
            try:
                row["dft_e_form_per_atom"] = self.references.formation_energy_per_atom(res)
            except Exception as exc:  # noqa: BLE001 - FormationEnergyError or a reference lookup
                row["dft_message"] = str(exc)
            return row
        h = self.hull.e_above_hull(res)
        row.update(
            dft_e_form_per_atom=h.e_form_per_atom,
            dft_e_above_hull=h.e_above_hull,
            dft_hull_complete=h.complete,
            dft_competing_phases=";".join(f"{k}={v}" for k, v in h.competing.items()),
        )
        if h.message:
            row["dft_message"] = h.message
        return row

    def verify(
        self, structures: Sequence[Any], labels: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        labels = list(labels) if labels is not None else [""] * len(structures)
        return [self.verify_one(s, lab) for s, lab in zip(structures, labels, strict=True)]


def verify(
    structures: Sequence[Any],
    cache_dir: str | os.PathLike,
    labels: Iterable[str] | None = None,
    settings: DFTSettings | None = None,
    data_dir: str | os.PathLike | None = None,
    hull: bool = True,
) -> list[dict[str, Any]]:
    """DFT rows (``dft_status``, ``dft_energy_per_atom``, ``dft_e_form_per_atom``,
    ``dft_e_above_hull`` in eV/atom, ...) for pymatgen Structures or ASE Atoms, one at a time
    (one core each), every calculation cached in ``cache_dir``."""
    return DFTVerifier(cache_dir, settings, data_dir, hull).verify(structures, labels)
