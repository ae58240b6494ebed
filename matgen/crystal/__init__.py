"""matgen.crystal: the batch contract, conversions, file io and validation of bad input.

Public API:
    CrystalBatch: the one batch contract (see its docstring for shapes and units).
    read_crystals / validate_crystals: CDVAE CSV, CIF, folder, extxyz -> ReadResult
        (usable crystals as a CrystalBatch + one EntryProblem per unusable entry).
    write_extxyz / write_cif: writers.
    check_crystal / check_labels / ValidationOptions: the per-crystal checks; too_close: which
        crystals of a batch have two atoms closer than the minimum distance;
        covalent_radii: Å by atomic number.
    reduce_batch: Niggli / primitive reduction.
"""

from __future__ import annotations

from matgen.crystal._batch import MAX_Z, CrystalBatch
from matgen.crystal._cif import write_cif
from matgen.crystal._entries import EntryProblem, ReadResult
from matgen.crystal._extxyz import write_extxyz
from matgen.crystal._io import read_crystals, validate_crystals
from matgen.crystal._parse import default_workers, reduce_batch
from matgen.crystal._text import FileProblem
from matgen.crystal._validate import (
    ValidationOptions,
    check_crystal,
    check_labels,
    covalent_radii,
    min_image_distance,
    too_close,
)

__all__ = [
    "MAX_Z",
    "CrystalBatch",
    "EntryProblem",
    "FileProblem",
    "ReadResult",
    "ValidationOptions",
    "check_crystal",
    "check_labels",
    "covalent_radii",
    "default_workers",
    "min_image_distance",
    "read_crystals",
    "reduce_batch",
    "too_close",
    "validate_crystals",
    "write_cif",
    "write_extxyz",
]
