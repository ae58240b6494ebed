"""The readers' front door (CDVAE CSV, CIF, folder of CIFs, extxyz) and the writers' home modules.

Every reader returns a :class:`ReadResult`: the usable crystals as one
:class:`~matgen.crystal.CrystalBatch` plus one :class:`EntryProblem` per unusable entry, each with
a one-line reason that names the entry (``train.csv:row 12 (mp-1234)``, ``bad.cif``,
``frames.extxyz:frame 3 (sample-7)``). Readers never raise for bad data; only programming
errors (a missing path, an unknown option) raise.

Numbering: ``row N`` counts CSV data rows from 1 (the header is not counted); ``frame N`` and
``block N`` count from 1 as well.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from matgen.crystal._cif import split_cif
from matgen.crystal._csv import split_csv
from matgen.crystal._entries import RawEntry, ReadResult, Reduction, file_error, one_line
from matgen.crystal._extxyz import split_extxyz
from matgen.crystal._parse import collect_entries
from matgen.crystal._text import FileProblem, base_suffix, read_text, sniff_format
from matgen.crystal._validate import ValidationOptions

__all__ = ["NON_DATA_SUFFIXES", "read_crystals", "validate_crystals"]

#: Files in a folder that are never crystal data (listed as ignored, not read).
NON_DATA_SUFFIXES = frozenset(
    [
        ".md",
        ".rst",
        ".txt",
        ".pdf",
        ".png",
        ".jpg",
        ".jpeg",
        ".svg",
        ".html",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".py",
        ".ipynb",
        ".log",
        ".sha256",
    ]
)


def _split_file(path: Path, label: str, stem: str) -> list[RawEntry]:
    """Split one file into raw entries; never raises for bad content."""
    try:
        return _split_file_unguarded(path, label, stem)
    except Exception as exc:  # noqa: BLE001 - last-resort guard: one line, no traceback
        return [file_error(label, f"cannot read: {type(exc).__name__}: {one_line(str(exc))}")]


def _split_file_unguarded(path: Path, label: str, stem: str) -> list[RawEntry]:
    try:
        text = read_text(path)
    except FileProblem as exc:
        return [file_error(label, str(exc))]
    fmt = sniff_format(path, text)
    if fmt == "csv":
        return split_csv(text, label)
    if fmt == "cif":
        return split_cif(text, label, stem)
    if fmt == "extxyz":
        return split_extxyz(text, label)
    return [
        file_error(label, "unrecognised format (expected CSV with a cif column, CIF or extxyz)")
    ]


def _file_stem(path: Path) -> str:
    name = path.name
    for suf in (".gz",):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    return Path(name).stem


def read_crystals(
    path: str | os.PathLike,
    *,
    options: ValidationOptions | None = None,
    reduce: Reduction = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ReadResult:
    """Read crystals from a CDVAE CSV, a CIF file, a folder, or an extxyz file.

    Formats are chosen by suffix (``.csv``, ``.csv.gz``, ``.cif``, ``.extxyz``/``.xyz``, any
    of them gzip-compressed), else sniffed from the content. A folder is read recursively:
    documentation / image / config files (:data:`NON_DATA_SUFFIXES`) and hidden files are
    listed in ``ignored_files``; every other file is read, and one that is not crystal data is
    reported as a bad entry. Each entry is parsed (pymatgen for CIF, ASE for extxyz), checked by
    :func:`~matgen.crystal.check_crystal` and the label checks, and either kept or reported.

    Ids: CSV ``material_id`` else the row number; a single-block CIF file its file stem
    (relative path in a folder); a multi-block CIF the block names; extxyz the info key
    ``material_id`` / ``sample_id`` / ``id`` / ``name`` else the frame number.
    Properties: numeric CSV columns / numeric extxyz info fields; other columns are kept as
    strings in ``metadata``. Later duplicates of an id are errors.

    Args:
        path: a file or folder.
        options: check thresholds (default :class:`ValidationOptions`; NaN labels kept).
        reduce: ``'niggli'`` (Niggli-reduce the cell) or ``'primitive'`` (primitive cell, then
            Niggli) or None, applied after the checks.
        workers: parsing processes (default :func:`default_workers`).
        progress: called as ``progress(done, total)`` while parsing.
        dtype: float dtype of the batch.

    Raises:
        FileNotFoundError: ``path`` does not exist (a usage error, not bad data).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    options = options or ValidationOptions()
    ignored: list[str] = []
    if p.is_dir():
        raws: list[RawEntry] = []
        files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        # documentation, images, configs: listed in ``ignored_files``; any other file is
        # read (sniffed if its suffix is unknown) so nothing is skipped silently
        used = [q for q in files if base_suffix(q) not in NON_DATA_SUFFIXES]
        ignored = [str(q.relative_to(p)) for q in files if q not in used]
        if not used:
            raws.append(file_error(p.name or str(p), "folder has no .cif, .csv or .extxyz files"))
        for q in used:
            rel = q.relative_to(p)
            stem = str(rel.parent / _file_stem(q)) if rel.parent != Path(".") else _file_stem(q)
            raws.extend(_split_file(q, str(rel), stem))
    else:
        raws = _split_file(p, p.name, _file_stem(p))
    return collect_entries(raws, options, reduce, workers, progress, dtype, ignored)


def validate_crystals(
    path: str | os.PathLike,
    *,
    max_atoms: int | None = None,
    min_distance: float = 0.5,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReadResult:
    """Strict check of a file or folder (``matgen data validate``): NaN labels are bad."""
    opts = ValidationOptions(max_atoms=max_atoms, min_distance=min_distance, allow_nan_labels=False)
    return read_crystals(path, options=opts, workers=workers, progress=progress)
