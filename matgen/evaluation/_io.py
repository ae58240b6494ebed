"""Reading generated frames (extxyz) and reference sets (CDVAE CSV) for evaluation.

CIF texts are parsed inside the worker processes (parsing thousands of CIFs is a large share of
the work), so the reference reader keeps them as strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matgen._errors import DataError
from matgen.evaluation._validity import CrystalArrays, arrays_from_atoms, arrays_from_structure

#: Info keys that may carry the id of the reference a generated frame belongs to.
ID_KEYS = ("material_id", "mp_id", "id")


class EvaluationInputError(DataError, ValueError):
    """Bad input file for evaluation (one line, names the file and the entry)."""


@dataclass
class ReferenceSet:
    """Reference crystals as CIF texts (parsed lazily).

    Attributes:
        ids: ``material_id`` of each row, as strings.
        cifs: CIF text of each row.
        properties: numeric columns of the CSV, ``{name: list of floats}`` (NaN = missing).
    """

    ids: list[str]
    cifs: list[str]
    properties: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class GeneratedSet:
    """Generated frames as picklable arrays.

    Attributes:
        arrays: per frame, :data:`CrystalArrays` (lattice, Z, Cartesian positions).
        ids: per frame, the reference ``material_id`` (``None`` when the frame carries none).
        info: per frame, the frame's scalar info fields.
    """

    arrays: list[CrystalArrays]
    ids: list[str | None]
    info: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.arrays)


def read_reference_csv(path: str | Path) -> ReferenceSet:
    """Read a CDVAE-style CSV (``cif`` column; ``material_id`` column, else the row number).

    Raises:
        EvaluationInputError: missing file or no ``cif`` column.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise EvaluationInputError(f"{p}: file not found")
    try:
        df = pd.read_csv(p)
    except Exception as e:  # noqa: BLE001
        raise EvaluationInputError(f"{p}: cannot read as CSV ({e})") from None
    if "cif" not in df.columns:
        raise EvaluationInputError(
            f"{p}: no 'cif' column (columns: {', '.join(map(str, df.columns))})"
        )
    ids = (
        [str(x) for x in df["material_id"]]
        if "material_id" in df.columns
        else [str(i) for i in range(len(df))]
    )
    props: dict[str, list[float]] = {}
    for col in df.columns:
        if col in ("cif", "material_id") or str(col).startswith("Unnamed"):
            continue
        if pd.api.types.is_numeric_dtype(df[col]):
            props[str(col)] = [float(x) for x in df[col]]
    cifs = [str(c) if isinstance(c, str) else "" for c in df["cif"]]
    return ReferenceSet(ids=ids, cifs=cifs, properties=props)


def reference_from_structures(structures, ids=None, properties=None) -> ReferenceSet:
    """A :class:`ReferenceSet` from pymatgen structures (CIF texts written by pymatgen)."""
    from pymatgen.io.cif import CifWriter

    cifs = [str(CifWriter(s)) for s in structures]
    return ReferenceSet(
        ids=[str(i) for i in (ids if ids is not None else range(len(cifs)))],
        cifs=cifs,
        properties={k: [float(x) for x in v] for k, v in (properties or {}).items()},
    )


def _frame_id(info: dict[str, Any]) -> str | None:
    for key in ID_KEYS:
        if key in info and info[key] is not None:
            v = info[key]
            if isinstance(v, float) and math.isnan(v):
                continue
            return str(v)
    return None


def read_generated(path: str | Path) -> GeneratedSet:
    """Read all frames of an extxyz (or any ASE-readable multi-frame file).

    Raises:
        EvaluationInputError: missing or unreadable file.
    """
    from ase.io import read

    p = Path(path)
    if not p.exists():
        raise EvaluationInputError(f"{p}: file not found")
    try:
        frames = read(p, index=":")
    except Exception as e:  # noqa: BLE001
        raise EvaluationInputError(f"{p}: cannot read frames ({type(e).__name__}: {e})") from None
    if not isinstance(frames, list):
        frames = [frames]
    arrays, ids, infos = [], [], []
    for a in frames:
        info = {}
        for key, v in a.info.items():
            if isinstance(v, np.generic):  # ASE parses numbers into numpy scalars
                v = v.item()
            if isinstance(v, str | int | float | bool):
                info[key] = v
        arrays.append(arrays_from_atoms(a))
        ids.append(_frame_id(a.info))
        infos.append(info)
    return GeneratedSet(arrays=arrays, ids=ids, info=infos)


def generated_from_structures(structures, ids=None) -> GeneratedSet:
    """A :class:`GeneratedSet` from pymatgen structures (``None`` entries are not allowed)."""
    arrays = [arrays_from_structure(s) for s in structures]
    return GeneratedSet(
        arrays=arrays,
        ids=[None if i is None else str(i) for i in ids]
        if ids is not None
        else [None] * len(arrays),
        info=[{} for _ in arrays],
    )


def parse_cif(cif: str):
    """Parse one CIF text into a pymatgen structure (first block), or ``None`` on failure."""
    import warnings

    from pymatgen.core import Structure

    if not cif:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(cif, fmt="cif")
    except Exception:  # noqa: BLE001
        return None
