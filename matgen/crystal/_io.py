"""Readers (CDVAE CSV, CIF, folder of CIFs, extxyz) and writers (extxyz, CIF).

Every reader returns a :class:`ReadResult`: the usable crystals as one
:class:`~matgen.crystal.CrystalBatch` plus one :class:`EntryError` per unusable entry, each with
a one-line reason that names the entry (``train.csv:row 12 (mp-1234)``, ``bad.cif``,
``frames.extxyz:frame 3 (sample-7)``). Readers never raise for bad data; only programming
errors (a missing path, an unknown option) raise.

Numbering: ``row N`` counts CSV data rows from 1 (the header is not counted); ``frame N`` and
``block N`` count from 1 as well.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from matgen.crystal._batch import CrystalBatch
from matgen.crystal._text import (
    FileProblem,
    base_suffix,
    read_text,
    sniff_format,
)
from matgen.crystal._validate import ValidationOptions, check_crystal, check_labels

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from pymatgen.core import Structure

Reduction = Literal["niggli", "primitive"] | None

#: Columns that identify a crystal in a CDVAE-style CSV, in order of preference.
ID_COLUMNS = ("material_id",)
#: extxyz info keys that identify a frame, in order of preference. ``sample_id`` comes first:
#: generated files hold several samples per source ``material_id`` (kept as metadata).
ID_KEYS = ("sample_id", "material_id", "id", "name")
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
#: Share of parseable values from which a CSV column counts as a numeric property (the
#: unparseable values of such a column are reported as bad entries).
_NUMERIC_SHARE = 0.5


@dataclass(frozen=True)
class EntryError:
    """One unusable entry.

    Attributes:
        entry: names the entry: ``file:row N (id)``, ``file:frame N (id)`` or a file name.
        reason: one line saying what is wrong.
    """

    entry: str
    reason: str

    def __str__(self) -> str:
        return f"{self.entry}: {self.reason}"


@dataclass
class ReadResult:
    """What a reader found.

    Attributes:
        batch: the usable crystals (possibly zero of them), ids and float property columns.
        errors: one :class:`EntryError` per unusable entry.
        num_entries: entries seen (usable + unusable; a file that cannot be read counts as one).
        metadata: non-numeric columns / info fields, one list aligned with ``batch`` each
            (e.g. ``pretty_formula``, ``elements``).
        formulas: reduced formula of each usable crystal.
        entries: entry name of each usable crystal (same format as ``EntryError.entry``).
        nan_labels: property name -> number of usable crystals whose label is NaN (missing).
        ignored_files: files in a folder that were skipped because of their type.
    """

    batch: CrystalBatch
    errors: list[EntryError] = field(default_factory=list)
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
class _Raw:
    """An entry before parsing: a CIF text or arrays, or an error found while splitting."""

    name: str
    id: str
    cif: str | None = None
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    labels: dict[str, float] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _file_error(label: str, reason: str) -> _Raw:
    """A whole file that cannot be used counts as one bad entry named by the file (one line:
    a reason may quote the file, e.g. a CIF read as column names when the header is gone)."""
    return _Raw(label, "", error=_one_line(reason))


def _one_line(msg: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    text = "; ".join(lines) if lines else "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CIF_MESSAGES = {
    "Singular matrix": "zero cell volume (singular lattice)",
    "species property only supports ordered structures": "partial occupancies (disordered sites)",
}


_NONFINITE = re.compile(
    r"^(?!\s*#).*?(?<![\w.])([+-]?(?:nan|inf|infinity))(?![\w.])", re.IGNORECASE | re.MULTILINE
)


def _nonfinite_field(text: str) -> str | None:
    """Name what holds a NaN/inf number in a CIF (cell or coordinates), else None."""
    for m in _NONFINITE.finditer(text):
        line = m.group(0).lstrip()
        if line.startswith("_cell_"):
            return "NaN or inf in the lattice (cell parameters)"
        if not line.startswith("_"):
            return "NaN or inf in the atomic coordinates"
    return None


def _bad_occupancy(parser) -> str | None:
    """pymatgen silently drops sites with occupancy <= 0; name them instead."""
    for block in parser.as_dict().values():
        occ = block.get("_atom_site_occupancy")
        if not occ:
            continue
        labels = block.get("_atom_site_label") or [""] * len(occ)
        for lab, v in zip(labels, occ):
            try:
                x = float(str(v).split("(")[0])
            except ValueError:
                continue  # '?' or '.': pymatgen treats it as 1
            if x <= 0:
                return f"site {lab} has occupancy {x:g} (<= 0)"
    return None


def _structure_from_cif(text: str) -> Structure | str:
    """Parse one CIF data block with pymatgen; return a Structure or a one-line reason."""
    from pymatgen.io.cif import CifParser

    if "_atom_site_fract_x" not in text and "_atom_site_cartn_x" not in text.lower():
        if "_cell_length_a" not in text:
            return "CIF does not parse: no cell parameters and no atom sites"
        return "CIF has no atom sites (no _atom_site_fract_x loop)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text, check_cif=False)
            bad_occ = _bad_occupancy(parser)
            if bad_occ is not None:
                return bad_occ
            structs = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for bad CIFs
            msg = _one_line(str(exc))
            nonfinite = _nonfinite_field(text)
            if nonfinite is not None:
                return nonfinite
            if isinstance(exc, ZeroDivisionError):  # pymatgen divides by the site count
                return "CIF has no atom sites (empty _atom_site loop)"
            for key, nice in _CIF_MESSAGES.items():
                if key in msg:
                    return nice
            if "_atom_site_fract_x" in msg:
                return "CIF does not parse: no fractional coordinates (_atom_site_fract_x)"
            if "exceeded tolerance" in msg:  # two sites at one position, occupancies summed
                occ = msg.replace("No structure parsed for section 1 in CIF.; ", "").rstrip(".")
                return f"overlapping sites: {occ} (duplicate atoms at one position?)"
            if isinstance(exc, ZeroDivisionError | IndexError | KeyError):
                detail = "; ".join(_one_line(str(w.message), 120) for w in caught[:1])
                msg = f"{type(exc).__name__}: {msg}" + (f" ({detail})" if detail else "")
            msg = msg.replace("No structure parsed for section 1 in CIF.; ", "")
            return f"CIF does not parse: {msg}"
    if not structs:
        detail = _one_line(str(caught[0].message)) if caught else "no structure in the block"
        return f"CIF does not parse: {detail}"
    return structs[0]


def _structure_to_arrays(s: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    from pymatgen.core.periodic_table import DummySpecies

    if not s.is_ordered:
        return "partial occupancies (disordered sites)"
    zs = []
    for site in s:
        sp = site.specie
        if isinstance(sp, DummySpecies):
            return f"unknown element '{sp.symbol}'"
        zs.append(sp.Z)
    return (np.asarray(zs, dtype=np.int64), np.asarray(s.frac_coords, float), s.lattice.matrix)


def _reduce(arrays, mode: Reduction):
    from pymatgen.core import Lattice, Structure

    z, f, lat = arrays
    s = Structure(Lattice(lat), z.tolist(), f)
    if mode == "primitive":
        s = s.get_primitive_structure()
    s = s.get_reduced_structure("niggli")
    return (
        np.asarray(s.atomic_numbers, dtype=np.int64),
        np.asarray(s.frac_coords),
        s.lattice.matrix,
    )


def _formula(z: np.ndarray) -> str:
    from pymatgen.core import Composition

    from matgen.crystal._validate import symbol

    vals, counts = np.unique(z, return_counts=True)
    return Composition({symbol(int(v)): int(c) for v, c in zip(vals, counts)}).reduced_formula


def _process_one(item: tuple[str | None, Any, ValidationOptions, Reduction]):
    """Parse + check one entry (runs in worker processes). Returns ('ok', arrays, formula)
    or ('err', reason)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's notes; problems are reported as reasons
        return _process_one_inner(item)


def _process_one_inner(item):
    cif, arrays, options, reduce = item
    try:
        if cif is not None:
            s = _structure_from_cif(cif)
            if isinstance(s, str):
                return ("err", s)
            arrays = _structure_to_arrays(s)
            if isinstance(arrays, str):
                return ("err", arrays)
            lat = arrays[2]
            if not np.all(np.isfinite(lat)) or np.linalg.det(lat) <= 0:
                # lattices built from CIF cell parameters are right-handed unless the angles
                # are impossible (e.g. alpha > beta + gamma, or 0 / 180 degrees)
                return ("err", _nonfinite_field(cif) or "invalid cell angles (no real cell)")
        z, f, lat = arrays
        reason = check_crystal(z, f, lat, options)
        if reason is not None:
            return ("err", reason)
        if reduce is not None:
            z, f, lat = _reduce((z, f, lat), reduce)
        f = np.mod(f, 1.0)
        f[f >= 1.0] -= 1.0
        return ("ok", (z, f, np.asarray(lat, float)), _formula(z))
    except Exception as exc:  # noqa: BLE001 - last-resort guard: bad data must never surface as a traceback
        return ("err", f"cannot use this entry: {type(exc).__name__}: {_one_line(str(exc))}")


def default_workers() -> int:
    """Worker processes for parsing: ``MATGEN_NUM_WORKERS`` or the CPUs this process may use."""
    env = os.environ.get("MATGEN_NUM_WORKERS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _run_all(items: list, workers: int, progress: Callable[[int, int], None] | None) -> list:
    n = len(items)
    if workers <= 1 or n < 256:
        out = []
        for i, it in enumerate(items):
            out.append(_process_one(it))
            if progress is not None and (i % 256 == 0 or i == n - 1):
                progress(i + 1, n)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork is cheapest (pymatgen already imported) but unsafe once other threads exist
    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        ctx = mp.get_context("fork")
    else:
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    out = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        for i, res in enumerate(ex.map(_process_one, items, chunksize=64)):
            out.append(res)
            if progress is not None and (i % 256 == 0 or i == n - 1):
                progress(i + 1, n)
    return out


def _finish(
    raws: list[_Raw],
    options: ValidationOptions,
    reduce: Reduction,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    dtype: torch.dtype,
    ignored: list[str] | None = None,
) -> ReadResult:
    """Parse and check the raw entries; errors keep the input order."""
    errs: dict[int, EntryError] = {}
    first: dict[str, str] = {}  # duplicate ids: the first occurrence wins
    todo: list[int] = []
    for k, r in enumerate(raws):
        if r.error is not None:
            errs[k] = EntryError(r.name, r.error)
            continue
        if r.id in first:
            errs[k] = EntryError(r.name, f"duplicate id {r.id!r} (first seen at {first[r.id]})")
            continue
        first[r.id] = r.name
        reason, _ = check_labels(r.labels, options)
        if reason is not None:
            errs[k] = EntryError(r.name, reason)
            continue
        todo.append(k)
    results = _run_all(
        [(raws[k].cif, raws[k].arrays, options, reduce) for k in todo],
        workers if workers is not None else default_workers(),
        progress,
    )
    good: list[tuple[_Raw, tuple, str]] = []
    for k, res in zip(todo, results):
        if res[0] == "err":
            errs[k] = EntryError(raws[k].name, res[1])
        else:
            good.append((raws[k], res[1], res[2]))
    prop_names = list(dict.fromkeys(key for r, _, _ in good for key in r.labels))
    meta_names = list(dict.fromkeys(key for r, _, _ in good for key in r.meta))
    props = {key: [r.labels.get(key, float("nan")) for r, _, _ in good] for key in prop_names}
    meta = {key: [r.meta.get(key, "") for r, _, _ in good] for key in meta_names}
    batch = CrystalBatch._from_arrays(
        [a[0] for _, a, _ in good],
        [a[1] for _, a, _ in good],
        [a[2] for _, a, _ in good],
        [len(a[0]) for _, a, _ in good],
        [r.id for r, _, _ in good],
        props,
        dtype,
    )
    nan_labels = {key: int(np.isnan(np.asarray(v, float)).sum()) for key, v in props.items()}
    return ReadResult(
        batch=batch,
        errors=[errs[k] for k in sorted(errs)],
        num_entries=len(raws),
        metadata=meta,
        formulas=[f for _, _, f in good],
        entries=[r.name for r, _, _ in good],
        nan_labels={key: v for key, v in nan_labels.items() if v},
        ignored_files=ignored or [],
    )


# ---------------------------------------------------------------------------- format splitters
def _entry_name(file: str, kind: str, n: int, ident: str | None) -> str:
    return f"{file}:{kind} {n}" + (f" ({ident})" if ident else "")


def _parse_float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        low = v.strip().lower()
        if low in ("true", "false"):
            return 1.0 if low == "true" else 0.0
        return None


def _split_csv(text: str, label: str) -> list[_Raw]:
    csv.field_size_limit(1 << 30)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return [_file_error(label, f"not a readable CSV: {_one_line(str(exc))}")]
    records = [rec for rec in records if any(c.strip() for c in rec)]
    if not records:
        return [_file_error(label, "empty file")]
    header = [c.strip() for c in records[0]]
    rows = records[1:]
    lower = [h.lower() for h in header]
    dups = sorted({h for h in header if header.count(h) > 1 and h})
    if dups:
        return [_file_error(label, f"duplicate column name(s): {', '.join(dups)}")]
    if "cif" not in lower:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        return [_file_error(label, f"missing required column 'cif' (columns: {shown})")]
    if not rows:
        return [_file_error(label, "no data rows (header only)")]
    cif_col = lower.index("cif")
    id_col = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
    # an unnamed column ('' or pandas' 'Unnamed: 0') is a saved index: not a property
    other = [
        j
        for j in range(len(header))
        if j not in (cif_col, id_col) and header[j] and not header[j].startswith("Unnamed:")
    ]
    width = len(header)
    # decide which columns are numeric properties
    numeric: list[int] = []
    for j in other:
        vals = [rec[j].strip() for rec in rows if len(rec) == width and rec[j].strip()]
        if not vals:
            numeric.append(j)  # an all-empty column: a property with every label missing
            continue
        ok = sum(_parse_float(v) is not None for v in vals)
        if ok > _NUMERIC_SHARE * len(vals):
            numeric.append(j)
    strings = [j for j in other if j not in numeric]
    raws: list[_Raw] = []
    for n, rec in enumerate(rows, start=1):
        ident = rec[id_col].strip() if id_col is not None and id_col < len(rec) else ""
        name = _entry_name(label, "row", n, ident or None)
        ident = ident or str(n)
        if len(rec) != width:
            raws.append(_Raw(name, ident, error=f"has {len(rec)} fields, header has {width}"))
            continue
        labels: dict[str, float] = {}
        bad = None
        for j in numeric:
            v = rec[j].strip()
            x = _parse_float(v) if v else float("nan")
            if x is None:
                bad = f"non-numeric value {v[:30]!r} in property {header[j]}"
                break
            labels[header[j]] = x
        if bad is not None:
            raws.append(_Raw(name, ident, error=bad))
            continue
        cif = rec[cif_col]
        if not cif.strip():
            raws.append(_Raw(name, ident, error="empty cif field"))
            continue
        raws.append(
            _Raw(name, ident, cif=cif, labels=labels, meta={header[j]: rec[j] for j in strings})
        )
    return raws


_DATA_RE = re.compile(r"^data_", re.MULTILINE)


def _split_cif(text: str, label: str, stem: str) -> list[_Raw]:
    starts = [m.start() for m in _DATA_RE.finditer(text)]
    if not starts:
        return [_file_error(label, "not a CIF: no data_ block")]
    blocks = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    if len(blocks) == 1:
        return [_Raw(label, stem, cif=blocks[0])]
    names = [b.split(None, 1)[0][len("data_") :] if b.split() else "" for b in blocks]
    raws = []
    for n, (b, nm) in enumerate(zip(blocks, names), start=1):
        ident = nm if nm and names.count(nm) == 1 else f"{stem}_{n}"
        raws.append(_Raw(_entry_name(label, "block", n, ident), ident, cif=b))
    return raws


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


def _split_extxyz(text: str, label: str) -> list[_Raw]:
    from ase.io import read as ase_read

    lines = text.splitlines()
    raws: list[_Raw] = []
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
                _Raw(
                    _entry_name(label, "frame", n, None),
                    f"{n}",
                    error=f"expected an atom count, got {head[:40]!r} (rest of file skipped)",
                )
            )
            break
        chunk = lines[i : i + natoms + 2]
        i += natoms + 2
        name = _entry_name(label, "frame", n, None)
        if len(chunk) < natoms + 2:
            raws.append(_Raw(name, str(n), error=f"truncated frame: {natoms} atoms announced"))
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                atoms = ase_read(io.StringIO("\n".join(chunk) + "\n"), format="extxyz")
            except KeyError as exc:
                raws.append(_Raw(name, str(n), error=f"unknown element or field {exc}"))
                continue
            except Exception as exc:  # noqa: BLE001
                raws.append(
                    _Raw(name, str(n), error=f"extxyz frame does not parse: {_one_line(str(exc))}")
                )
                continue
        ident, labels, meta = _atoms_labels(atoms)
        name = _entry_name(label, "frame", n, ident)
        if atoms.cell.rank < 3:
            raws.append(_Raw(name, ident or str(n), error="no 3D lattice (frame is not periodic)"))
            continue
        if not all(atoms.pbc):
            pbc = " ".join("T" if x else "F" for x in atoms.pbc)
            raws.append(_Raw(name, ident or str(n), error=f"not periodic in 3D (pbc={pbc})"))
            continue
        arrays = (
            np.asarray(atoms.numbers, dtype=np.int64),
            np.asarray(atoms.cell.scaled_positions(atoms.positions), float),
            np.asarray(atoms.cell[:], float),
        )
        raws.append(_Raw(name, ident or str(n), arrays=arrays, labels=labels, meta=meta))
    if not raws:
        return [_file_error(label, "no frames")]
    return raws


def _split_file(path: Path, label: str, stem: str) -> list[_Raw]:
    """Split one file into raw entries; never raises for bad content."""
    try:
        return _split_file_unguarded(path, label, stem)
    except Exception as exc:  # noqa: BLE001 - last-resort guard: one line, no traceback
        return [_file_error(label, f"cannot read: {type(exc).__name__}: {_one_line(str(exc))}")]


def _split_file_unguarded(path: Path, label: str, stem: str) -> list[_Raw]:
    try:
        text = read_text(path)
    except FileProblem as exc:
        return [_file_error(label, str(exc))]
    fmt = sniff_format(path, text)
    if fmt == "csv":
        return _split_csv(text, label)
    if fmt == "cif":
        return _split_cif(text, label, stem)
    if fmt == "extxyz":
        return _split_extxyz(text, label)
    return [
        _file_error(label, "unrecognised format (expected CSV with a cif column, CIF or extxyz)")
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
        raws: list[_Raw] = []
        files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        # documentation, images, configs: listed in ``ignored_files``; any other file is
        # read (sniffed if its suffix is unknown) so nothing is skipped silently
        used = [q for q in files if base_suffix(q) not in NON_DATA_SUFFIXES]
        ignored = [str(q.relative_to(p)) for q in files if q not in used]
        if not used:
            raws.append(_file_error(p.name or str(p), "folder has no .cif, .csv or .extxyz files"))
        for q in used:
            rel = q.relative_to(p)
            stem = str(rel.parent / _file_stem(q)) if rel.parent != Path(".") else _file_stem(q)
            raws.extend(_split_file(q, str(rel), stem))
    else:
        raws = _split_file(p, p.name, _file_stem(p))
    return _finish(raws, options, reduce, workers, progress, dtype, ignored)


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


# ---------------------------------------------------------------------------- writers
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


_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def write_cif(
    path: str | os.PathLike,
    crystals: CrystalBatch | Sequence[Structure],
    ids: Sequence[str] | None = None,
) -> list[Path]:
    """Write crystals as CIF (pymatgen ``CifWriter``).

    Args:
        path: a ``.cif`` file (all crystals as data blocks named after their ids) or a folder
            (one ``<id>.cif`` per crystal).
        crystals: a batch or pymatgen structures.
        ids: names for structures (default: the batch ids, ``structure.properties
            ['material_id']`` or the index).

    Returns:
        The files written.
    """
    from pymatgen.io.cif import CifWriter

    if isinstance(crystals, CrystalBatch):
        structs = crystals.to_structures()
        names = list(ids) if ids is not None else list(crystals.ids)
    else:
        structs = list(crystals)
        names = (
            list(ids)
            if ids is not None
            else [str(s.properties.get("material_id", i)) for i, s in enumerate(structs)]
        )
    names = [_SAFE.sub("_", n) or f"crystal_{i}" for i, n in enumerate(names)]
    texts = []
    for s, n in zip(structs, names):
        s = s.copy()
        s.properties = {}
        body = str(CifWriter(s))
        lines = body.splitlines()
        idx = next((i for i, ln in enumerate(lines) if ln.startswith("data_")), None)
        if idx is not None:
            lines[idx] = f"data_{n}"
        texts.append("\n".join(lines) + "\n")
    p = Path(path)
    if p.suffix.lower() == ".cif":
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(texts))
        return [p]
    p.mkdir(parents=True, exist_ok=True)
    out = []
    for n, t in zip(names, texts):
        q = p / f"{n}.cif"
        q.write_text(t)
        out.append(q)
    return out


def reduce_batch(batch: CrystalBatch, mode: Literal["niggli", "primitive"]) -> CrystalBatch:
    """Niggli-reduce (or take the primitive cell of, then Niggli-reduce) every crystal."""
    zs, fs, lats, nas = [], [], [], []
    ptr = batch.ptr.tolist()
    z = batch.atomic_numbers.cpu().numpy()
    f = batch.frac_coords.detach().cpu().double().numpy()
    lat = batch.lattice.detach().cpu().double().numpy()
    for i in range(batch.num_crystals):
        zi, fi, li = _reduce((z[ptr[i] : ptr[i + 1]], f[ptr[i] : ptr[i + 1]], lat[i]), mode)
        fi = np.mod(fi, 1.0)
        zs.append(zi)
        fs.append(fi)
        lats.append(li)
        nas.append(len(zi))
    props = {k: v.detach().cpu().double().numpy() for k, v in batch.properties.items()}
    return CrystalBatch._from_arrays(
        zs, fs, lats, nas, batch.ids, props, batch.frac_coords.dtype
    ).to(batch.device)
