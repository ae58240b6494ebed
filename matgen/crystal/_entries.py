"""What a reader finds: one record per entry before parsing, per unusable entry, and the result.

Entry names: ``row N`` counts CSV data rows from 1 (the header is not counted); ``frame N`` and
``block N`` count from 1 as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from matgen.crystal._batch import CrystalBatch

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

Reduction = Literal["niggli", "primitive"] | None


@dataclass(frozen=True)
class EntryProblem:
    """One unusable entry.

    Attributes:
        entry: names the entry: ``file:row N (id)``, ``file:frame N (id)`` or a file name.
        reason: one line saying what is wrong.
        excluded: the entry is a readable crystal left out by a limit the caller set
            (``max_atoms``), not bad data.
    """

    entry: str
    reason: str
    excluded: bool = False

    def __str__(self) -> str:
        return f"{self.entry}: {self.reason}"


@dataclass
class ReadResult:
    """What a reader found.

    Attributes:
        batch: the usable crystals (possibly zero of them), ids and float property columns.
        errors: one :class:`EntryProblem` per unusable entry.
        num_entries: entries seen (usable + unusable; a file that cannot be read counts as one).
        metadata: non-numeric columns / info fields, one list aligned with ``batch`` each
            (e.g. ``pretty_formula``, ``elements``).
        formulas: reduced formula of each usable crystal.
        entries: entry name of each usable crystal (same format as ``EntryProblem.entry``).
        nan_labels: property name -> number of usable crystals whose label is NaN (missing).
        ignored_files: files in a folder that were skipped because of their type.
    """

    batch: CrystalBatch
    errors: list[EntryProblem] = field(default_factory=list)
    num_entries: int = 0
    metadata: dict[str, list[str]] = field(default_factory=dict)
    formulas: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    nan_labels: dict[str, int] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def num_good(self) -> int:
        return self.batch.num_crystals

    @property
    def num_bad(self) -> int:
        return len(self.errors)

    @property
    def property_names(self) -> list[str]:
        return list(self.batch.properties)

    def structures(self) -> list[Structure]:
        """The usable crystals as pymatgen structures."""
        return self.batch.to_structures()


# ---------------------------------------------------------------------------- raw entries
@dataclass
class RawEntry:
    """An entry before parsing: a CIF text or arrays, or an error found while splitting."""

    name: str
    id: str
    cif: str | None = None
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    labels: dict[str, float] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def file_error(label: str, reason: str) -> RawEntry:
    """A whole file that cannot be used counts as one bad entry named by the file (one line:
    a reason may quote the file, e.g. a CIF read as column names when the header is gone)."""
    return RawEntry(label, "", error=one_line(reason))


def one_line(msg: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    text = "; ".join(lines) if lines else "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entry_name(file: str, kind: str, n: int, ident: str | None) -> str:
    return f"{file}:{kind} {n}" + (f" ({ident})" if ident else "")
