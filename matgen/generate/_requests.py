"""Sampling requests: one entry per output structure, from formulas, a CSV or the training
histogram of atoms per cell (de novo)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from matgen._errors import DataError, UserError
from matgen.crystal import MAX_Z


class SampleInputError(UserError, ValueError):
    """Bad sampling input (one line, meant for the user: line breaks in a message, e.g. from
    a library's error about the user's text, become spaces). Bad usage (exit 2)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(" ".join(str(message).split()), *args)


class SampleDataError(SampleInputError, DataError):
    """A compositions CSV that cannot be read or lacks its columns: bad data (exit 1)."""


#: Largest cell a formula may ask for: far beyond any training set here (MP-20: 20 atoms,
#: MPTS-52: 52), small enough that a typo (``Na1000Cl1000``) is refused instead of starting a
#: sampling run that exhausts memory.
MAX_CELL_ATOMS = 500

_SYMBOL = re.compile(r"[A-Z][a-z]?")


@dataclass(frozen=True)
class Request:
    """One structure to generate.

    Attributes:
        atomic_numbers: the atoms of the cell (CSP), or ``None`` (de novo).
        num_atoms: atoms in the cell.
        composition: requested formula (CSP), e.g. ``Na4Cl4``; ``""`` for de novo.
        material_id: the source row's id (CSP from a CSV), else ``""``.
    """

    atomic_numbers: tuple[int, ...] | None
    num_atoms: int
    composition: str = ""
    material_id: str = ""


def _formula_atoms(formula: str, units: int = 1) -> list[int]:
    """Atomic numbers of ``formula`` (counts as written) times ``units``.

    Raises:
        SampleInputError: not a formula, an element written with a zero or fractional count
            (``Na0Cl``, ``NaCl0.5``), an unknown element, or a cell above
            :data:`MAX_CELL_ATOMS` atoms.
    """
    from pymatgen.core import Composition

    if not formula.strip():
        raise SampleInputError("bad formula '': empty")
    try:
        comp = Composition(formula)
    except (ValueError, KeyError, TypeError, OverflowError) as e:  # pymatgen raises all these
        raise SampleInputError(f"bad formula {formula!r}: {e}") from None
    if not comp.valid:  # pymatgen reads unknown symbols as dummy species
        raise SampleInputError(f"bad formula {formula!r}: unknown element")
    # pymatgen drops elements written with a zero count (Na0Cl reads as Cl): refuse them
    zero = [s for s in dict.fromkeys(_SYMBOL.findall(formula))
            if s not in {el.symbol for el in comp}]
    if zero:
        raise SampleInputError(f"bad formula {formula!r}: {', '.join(zero)} with count 0")
    if len(comp) == 0:
        raise SampleInputError(f"bad formula {formula!r}: no elements")
    counts: list[tuple[int, int]] = []
    for el, amt in sorted(comp.items(), key=lambda t: t[0].Z):
        a = float(amt)
        n = round(a) if math.isfinite(a) else 0
        if not math.isfinite(a) or abs(a - n) > 1e-6 or n < 1:
            raise SampleInputError(f"bad formula {formula!r}: {el} count {amt} is not a whole number")
        if el.Z > MAX_Z:
            raise SampleInputError(f"bad formula {formula!r}: {el} (Z={el.Z}) beyond Z={MAX_Z}")
        counts.append((el.Z, n))
    total = sum(n for _, n in counts) * units
    if total > MAX_CELL_ATOMS:
        times = f" x {units} formula units" if units != 1 else ""
        raise SampleInputError(f"bad formula {formula!r}{times}: {total} atoms per cell, above "
                               f"the limit of {MAX_CELL_ATOMS}")
    return [z for z, n in counts for _ in range(n * units)]


def check_formula(formula: str, formula_units: int | Literal["as-written", "auto"]) -> None:
    """The checks on a formula that need no checkpoint (see :func:`_formula_atoms`; with an
    integer ``formula_units`` the cell-size limit of that many reduced formula units).

    Raises:
        SampleInputError: one line naming the formula.
    """
    _formula_atoms(formula)
    if formula_units not in ("as-written", "auto"):
        from pymatgen.core import Composition

        _formula_atoms(Composition(formula).reduced_formula, int(formula_units))


def _compact(zs: Sequence[int]) -> str:
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    counts: dict[str, int] = {}
    for z in zs:
        s = Element.from_Z(int(z)).symbol
        counts[s] = counts.get(s, 0) + 1
    # electronegativity order, counts of 1 omitted: "SrTiO3", "Na2Cl2"
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", Composition(counts).formula.replace(" ", ""))


def _units_weights(meta: dict) -> tuple[list[int], torch.Tensor]:
    hist = (meta.get("dataset_stats") or {}).get("formula_units_hist") or {"1": 1}
    keys = sorted(int(k) for k in hist)
    return keys, torch.tensor([float(hist[str(k)]) for k in keys])


def expand_formula(
    formula: str,
    formula_units: int | Literal["as-written", "auto"],
    meta: dict,
    generator: torch.Generator,
) -> list[int]:
    """Atomic numbers of one cell for ``formula``.

    ``as-written`` takes the counts literally (``Na4Cl4``: 8 atoms, ``NaCl``: 2); an integer
    ``Z`` multiplies the reduced formula by ``Z``; ``auto`` draws ``Z`` from the training set's
    formula-units histogram (checkpoint metadata), restricted to cells no larger than the
    largest training cell.
    """
    from pymatgen.core import Composition

    if formula_units == "as-written":
        return _formula_atoms(formula)
    _formula_atoms(formula)  # the checks on the formula as the user wrote it
    reduced = Composition(formula).reduced_formula
    base = _formula_atoms(reduced)
    if formula_units == "auto":
        keys, w = _units_weights(meta)
        hist = (meta.get("dataset_stats") or {}).get("num_atoms_hist") or {}
        max_atoms = max((int(k) for k in hist), default=10**9)
        ok = torch.tensor([k * len(base) <= max_atoms for k in keys])
        if not ok.any():
            z = 1
        else:
            w = torch.where(ok, w, torch.zeros_like(w))
            z = keys[int(torch.multinomial(w, 1, generator=generator))]
    else:
        z = int(formula_units)
        if z < 1:
            raise SampleInputError("formula units must be >= 1")
        _formula_atoms(reduced, z)  # the cell-size limit
    return base * z


def requests_from_formulas(
    formulas: Sequence[str], num: int, formula_units, meta: dict, generator: torch.Generator
) -> list[Request]:
    """``num`` CSP requests per formula (the cell drawn per request when ``auto``)."""
    out = []
    for f in formulas:
        for _ in range(num):
            zs = expand_formula(f, formula_units, meta, generator)
            out.append(Request(tuple(zs), len(zs), _compact(zs)))
    return out


def requests_from_csv(
    path: str | Path, num: int, formula_units, meta: dict, generator: torch.Generator
) -> tuple[list[Request], list[str]]:
    """CSP requests from a CSV with ``material_id`` and ``cif`` or ``formula`` columns.

    A ``cif`` column gives exact atom counts (the structure's cell, read by
    :func:`matgen.crystal.read_crystals`; a CIF that does not parse is skipped with its
    reason); otherwise ``formula`` is expanded per ``formula_units``. ``num`` requests per row, each carrying the row's
    ``material_id`` (the row number when the column is absent).

    Returns:
        ``(requests, skipped)`` with one line per unusable row.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise SampleDataError(f"{path}: cannot read CSV ({e})") from None
    cols = set(df.columns)
    if "cif" not in cols and "formula" not in cols:
        raise SampleDataError(f"{path}: needs a 'cif' or 'formula' column (has {sorted(cols)})")
    ids = (df["material_id"].astype(str).tolist() if "material_id" in cols
           else [str(i) for i in range(len(df))])
    out: list[Request] = []
    skipped: list[str] = []
    if "cif" in cols:  # exact cells, parsed in parallel by matgen.crystal.read_crystals
        from matgen.crystal import ValidationOptions, read_crystals

        lenient = ValidationOptions(min_distance=0.0, min_volume_per_atom=0.0)
        res = read_crystals(path, options=lenient)
        skipped = [str(e) for e in res.errors]
        batch = res.batch
        ptr = batch.ptr.tolist()
        z_all = batch.atomic_numbers.tolist()
        for i, mid in enumerate(batch.ids):
            zs = sorted(z_all[ptr[i] : ptr[i + 1]])
            comp = _compact(zs)
            out.extend(Request(tuple(zs), len(zs), comp, str(mid)) for _ in range(num))
        return out, skipped
    for row, (mid, formula) in enumerate(zip(ids, df["formula"].astype(str), strict=True)):
        try:
            for _ in range(num):
                zs = expand_formula(formula, formula_units, meta, generator)
                out.append(Request(tuple(zs), len(zs), _compact(zs), mid))
        except SampleInputError as e:
            skipped.append(f"{path.name}:row {row + 1} ({mid}): {e}")
    return out, skipped


def requests_de_novo(num: int, meta: dict, generator: torch.Generator) -> list[Request]:
    """``num`` de novo requests with atom counts drawn from the training histogram."""
    hist = (meta.get("dataset_stats") or {}).get("num_atoms_hist")
    if not hist:
        stats = meta.get("stats")
        hist = getattr(stats, "num_atoms_counts", None) or (stats or {}).get("num_atoms_counts")
    if not hist:
        raise SampleInputError("the checkpoint has no atoms-per-cell histogram for de novo")
    keys = sorted(int(k) for k in hist)
    w = torch.tensor([float(hist[k] if k in hist else hist[str(k)]) for k in keys])
    idx = torch.multinomial(w, num, replacement=True, generator=generator)
    return [Request(None, keys[int(i)]) for i in idx]
