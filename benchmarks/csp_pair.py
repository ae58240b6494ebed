"""Two CSP samplings of the same reference rows side by side: precision where both match.

An RMSE over matched rows rises when a model adds hard rows it matches loosely, so two models'
RMSEs do not say which one places atoms better. This reads two ``matgen evaluate --task csp``
per-structure tables (``*.csp_per_structure.csv``, one sample per row) and reports, for the
rows both match, each one's RMSE, and for the rows only one matches, their count and RMSE
(RMSE as ``matgen evaluate`` reports it: the mean of the matched rows' RMS distances). 2026-12-07:
l31 vs c14 on the public test at fast 100, 1,848 rows both match at 0.0591 vs 0.0596
(``results/l31_default_device_h100.json``).

    python benchmarks/csp_pair.py l31/csp_test_k100_s0.csp_per_structure.csv \\
        c14/csp_test_k100_s0.csp_per_structure.csv --names l31 c14
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_table(path: Path) -> dict[str, float | None]:
    """material_id -> RMS of its first sample (None: not matched)."""
    out: dict[str, float | None] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["material_id"] in out:
                continue  # one sample per row: the first
            hit = row["matched"].strip().lower() in ("true", "1")
            out[row["material_id"]] = float(row["rms_dist"]) if hit else None
    return out


def _stats(values: list[float]) -> dict:
    """Rows and RMSE as ``matgen evaluate`` reports it (CDVAE's: the mean of the matched rows'
    RMS distances)."""
    return {"rows": len(values),
            "rmse": round(sum(values) / len(values), 4) if values else None}


def pair(a: dict[str, float | None], b: dict[str, float | None],
         names: tuple[str, str] = ("a", "b")) -> dict:
    """The comparison of two tables over the rows they share (see the module docstring)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two tables share no material_id")
    both = [m for m in common if a[m] is not None and b[m] is not None]
    only_a = [a[m] for m in common if a[m] is not None and b[m] is None]
    only_b = [b[m] for m in common if b[m] is not None and a[m] is None]
    return {"rows": len(common),
            "matched": {names[0]: len(both) + len(only_a), names[1]: len(both) + len(only_b)},
            "both_matched": {names[0]: _stats([a[m] for m in both]),
                             names[1]: _stats([b[m] for m in both])},
            f"only_{names[0]}": _stats(only_a), f"only_{names[1]}": _stats(only_b)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--names", nargs=2, default=["a", "b"], metavar=("A", "B"))
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    for p in (args.a, args.b):
        if not p.is_file():
            ap.error(f"{p}: not found")
    try:
        out = pair(read_table(args.a), read_table(args.b), tuple(args.names))
    except (KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(out, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
