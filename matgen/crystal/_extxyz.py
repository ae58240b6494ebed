"""extxyz: splitting a file into frames (ASE), info fields as ids and properties; writing."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matgen.crystal._batch import CrystalBatch
from matgen.crystal._entries import RawEntry, entry_name, file_error, one_line

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

#: extxyz info keys that identify a frame, in order of preference. ``sample_id`` comes first:
#: generated files hold several samples per source ``material_id`` (kept as metadata).
ID_KEYS = ("sample_id", "material_id", "id", "name")


def _atoms_labels(atoms: Atoms) -> tuple[str | None, dict[str, float], dict[str, str]]:
    info = dict(atoms.info)
    if atoms.calc is not None:  # ASE moves energy/free_energy/... into a calculator
        for k, v in getattr(atoms.calc, "results", {}).items():
            if np.ndim(v) == 0:
                info.setdefault(k, v)
    ident = None
    meta: dict[str, str] = {}
    for k in ID_KEYS:
        if k in info:
            if ident is None:
                ident = str(info.pop(k))
            else:  # other identifiers stay strings (never numeric properties)
                meta[k] = str(info.pop(k))
    labels: dict[str, float] = {}
    for k, v in info.items():
        if isinstance(v, bool | int | float | np.bool_ | np.integer | np.floating):
            labels[k] = float(v)
        elif isinstance(v, str):
            meta[k] = v
        else:
            meta[k] = str(v)
    return ident, labels, meta


def split_extxyz(text: str, label: str) -> list[RawEntry]:
    from ase.io import read as ase_read

    lines = text.splitlines()
    raws: list[RawEntry] = []
    i, n = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n += 1
        head = lines[i].strip()
        try:
            natoms = int(head)
            if natoms < 0:
                raise ValueError
        except ValueError:
            raws.append(
                RawEntry(
                    entry_name(label, "frame", n, None),
                    f"{n}",
                    error=f"expected an atom count, got {head[:40]!r} (rest of file skipped)",
                )
            )
            break
        chunk = lines[i : i + natoms + 2]
        i += natoms + 2
        name = entry_name(label, "frame", n, None)
        if len(chunk) < natoms + 2:
            raws.append(RawEntry(name, str(n), error=f"truncated frame: {natoms} atoms announced"))
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                atoms = ase_read(io.StringIO("\n".join(chunk) + "\n"), format="extxyz")
            except KeyError as exc:
                raws.append(RawEntry(name, str(n), error=f"unknown element or field {exc}"))
                continue
            except Exception as exc:  # noqa: BLE001
                raws.append(
                    RawEntry(
                        name, str(n), error=f"extxyz frame does not parse: {one_line(str(exc))}"
                    )
                )
                continue
        ident, labels, meta = _atoms_labels(atoms)
        name = entry_name(label, "frame", n, ident)
        if atoms.cell.rank < 3:
            raws.append(
                RawEntry(name, ident or str(n), error="no 3D lattice (frame is not periodic)")
            )
            continue
        if not all(atoms.pbc):
            pbc = " ".join("T" if x else "F" for x in atoms.pbc)
            raws.append(RawEntry(name, ident or str(n), error=f"not periodic in 3D (pbc={pbc})"))
            continue
        arrays = (
            np.asarray(atoms.numbers, dtype=np.int64),
            np.asarray(atoms.cell.scaled_positions(atoms.positions), float),
            np.asarray(atoms.cell[:], float),
        )
        raws.append(RawEntry(name, ident or str(n), arrays=arrays, labels=labels, meta=meta))
    if not raws:
        return [file_error(label, "no frames")]
    return raws


def _as_atoms(crystals: CrystalBatch | Sequence[Atoms]) -> list[Atoms]:
    if isinstance(crystals, CrystalBatch):
        return crystals.to_atoms()
    return [a.copy() for a in crystals]


def write_extxyz(
    path: str | os.PathLike,
    crystals: CrystalBatch | Sequence[Atoms],
    info: dict[str, Sequence[Any]] | None = None,
    append: bool = False,
) -> Path:
    """Write crystals to an extxyz file with per-structure info fields.

    Args:
        path: output file.
        crystals: a batch (its ids become ``material_id``, its properties info fields) or ASE
            ``Atoms`` (their ``info`` is kept).
        info: extra per-structure fields, ``{key: values}`` with one value per crystal
            (e.g. ``{"sample_id": [...], "e_above_hull": [...]}``).
        append: append to an existing file.

    Returns:
        The path written.
    """
    from ase.io import write as ase_write

    atoms = _as_atoms(crystals)
    for k, vals in (info or {}).items():
        vals = list(vals)
        if len(vals) != len(atoms):
            raise ValueError(f"info[{k!r}] has {len(vals)} values for {len(atoms)} crystals")
        for a, v in zip(atoms, vals):
            a.info[k] = v.item() if hasattr(v, "item") else v
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ase_write(str(p), atoms, format="extxyz", append=append)
    return p
