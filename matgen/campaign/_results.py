"""Strict reading of lab results CSVs (``matgen campaign import-results``).

A results file is ``candidate_id`` plus property columns (``formula``, ``spacegroup`` and
``notes`` may stay from the request file). A file-level problem (no ``candidate_id`` column, an
unknown column such as a misspelled property, no property column, an unreadable file) rejects
the whole file; a row-level problem rejects that row, named by its line and id with the reason.
A row is only accepted with at least one known, finite property value: the unfilled request,
a short row, ``nan``, ``inf`` or an absurd magnitude never close a candidate.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Columns a results file may carry besides ``candidate_id`` and the properties.
PASSTHROUGH_COLUMNS = ("formula", "spacegroup", "notes")
#: Largest magnitude accepted for a measured property (``1e308`` is a fill value, not data).
MAX_ABS_VALUE = 1e6


class ResultsFileError(ValueError):
    """The results file as a whole cannot be imported (one line: the file and the reason;
    line breaks quoted from the file, e.g. a header cell with a newline, become spaces)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(" ".join(str(message).split()), *args)


@dataclass
class ResultRow:
    """One accepted row: ``line`` in the file, the candidate id, its property values."""

    line: int
    candidate_id: str
    values: dict[str, float]


@dataclass
class ResultsFile:
    """The readable rows of a results file and one error line per rejected row."""

    path: str
    rows: list[ResultRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {r.candidate_id: dict(r.values) for r in self.rows}


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value(prop: str, raw: str) -> tuple[float | None, str | None]:
    """(value, None), (None, None) for a blank cell, or (None, reason)."""
    v = raw.strip()
    if v == "":
        return None, None
    try:
        f = float(v)
    except ValueError:
        return None, f"{prop}={v!r} is not a number"
    if not math.isfinite(f):
        return None, f"{prop}={v} is not a finite number (leave the cell blank if not measured)"
    if abs(f) > MAX_ABS_VALUE:
        return None, f"{prop}={v} is out of range (|value| > {MAX_ABS_VALUE:g})"
    return f, None


def read_results(csv_path: str | Path, properties: Sequence[str]) -> ResultsFile:
    """Read and check a lab results CSV.

    Args:
        csv_path: the file.
        properties: the property columns the campaign expects (any subset may be present).

    Raises:
        ResultsFileError: a problem with the whole file (named, one line).
    """
    path = Path(csv_path)
    out = ResultsFile(str(path))
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsFileError(f"{path}: cannot read as a UTF-8 CSV file ({exc})") from None
    if not table or not any(c.strip() for c in table[0]):
        raise ResultsFileError(f"{path}: empty file (expected a header: candidate_id,"
                               f" {', '.join(properties)})")
    header = [c.strip() for c in table[0]]
    if "candidate_id" not in header:
        raise ResultsFileError(f"{path}: needs a candidate_id column (header: {','.join(header)})")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise ResultsFileError(f"{path}: column(s) {', '.join(dup)} appear more than once")
    unknown = [c for c in header
               if c != "candidate_id" and c not in properties and c not in PASSTHROUGH_COLUMNS]
    if unknown:
        c = unknown[0]
        raise ResultsFileError(
            f"{path}: unknown column {c!r}{_suggest(c, properties)}; the campaign expects "
            f"{', '.join(properties)} (nothing was imported)")
    props = [c for c in header if c in properties]
    if not props:
        raise ResultsFileError(f"{path}: no property column; expected one of "
                               f"{', '.join(properties)}")
    col = {c: header.index(c) for c in header}
    seen: dict[str, list[ResultRow]] = {}
    for line, fields in enumerate(table[1:], start=2):
        if not any(f.strip() for f in fields):
            continue  # a blank line
        cid = fields[col["candidate_id"]].strip() if len(fields) > col["candidate_id"] else ""
        where = f"{path}:{line}: {cid or '(no candidate_id)'}"
        if len(fields) != len(header):
            out.errors.append(f"{where}: {len(fields)} fields, the header has {len(header)}")
            continue
        if not cid:
            out.errors.append(f"{where}: empty candidate_id")
            continue
        values: dict[str, float] = {}
        problems = []
        for p in props:
            v, why = _value(p, fields[col[p]])
            if why:
                problems.append(why)
            elif v is not None:
                values[p] = v
        if problems:
            out.errors.append(f"{where}: {'; '.join(problems)}")
            continue
        if not values:
            out.errors.append(f"{where}: no value for {', '.join(props)} (an unfilled request?)")
            continue
        seen.setdefault(cid, []).append(ResultRow(line, cid, values))
    for cid, rows in seen.items():
        if len(rows) > 1 and any(r.values != rows[0].values for r in rows[1:]):
            lines = ", ".join(str(r.line) for r in rows)
            out.errors.append(f"{path}:{rows[0].line}: {cid}: conflicting values on lines "
                              f"{lines} (none imported)")
            continue
        out.rows.append(rows[0])
    out.rows.sort(key=lambda r: r.line)
    return out
