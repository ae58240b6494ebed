"""CDVAE-style CSV: one entry per row, a ``cif`` column, numeric columns as properties."""

from __future__ import annotations

import csv
import io

from matgen.crystal._entries import RawEntry, entry_name, file_error, one_line

#: Columns that identify a crystal in a CDVAE-style CSV, in order of preference.
ID_COLUMNS = ("material_id",)
#: Share of parseable values from which a CSV column counts as a numeric property (the
#: unparseable values of such a column are reported as bad entries).
_NUMERIC_SHARE = 0.5


def _parse_float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        low = v.strip().lower()
        if low in ("true", "false"):
            return 1.0 if low == "true" else 0.0
        return None


def split_csv(text: str, label: str) -> list[RawEntry]:
    csv.field_size_limit(1 << 30)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return [file_error(label, f"not a readable CSV: {one_line(str(exc))}")]
    records = [rec for rec in records if any(c.strip() for c in rec)]
    if not records:
        return [file_error(label, "empty file")]
    header = [c.strip() for c in records[0]]
    rows = records[1:]
    lower = [h.lower() for h in header]
    dups = sorted({h for h in header if header.count(h) > 1 and h})
    if dups:
        return [file_error(label, f"duplicate column name(s): {', '.join(dups)}")]
    if "cif" not in lower:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        return [file_error(label, f"missing required column 'cif' (columns: {shown})")]
    if not rows:
        return [file_error(label, "no data rows (header only)")]
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
    raws: list[RawEntry] = []
    for n, rec in enumerate(rows, start=1):
        ident = rec[id_col].strip() if id_col is not None and id_col < len(rec) else ""
        name = entry_name(label, "row", n, ident or None)
        ident = ident or str(n)
        if len(rec) != width:
            raws.append(RawEntry(name, ident, error=f"has {len(rec)} fields, header has {width}"))
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
            raws.append(RawEntry(name, ident, error=bad))
            continue
        cif = rec[cif_col]
        if not cif.strip():
            raws.append(RawEntry(name, ident, error="empty cif field"))
            continue
        raws.append(
            RawEntry(name, ident, cif=cif, labels=labels, meta={header[j]: rec[j] for j in strings})
        )
    return raws
