"""Where de novo compositions differ from real ones: per cell size, elements per crystal and
"singletons" (elements with exactly one atom in the cell), and the share of crystals holding
each element, for generated extxyz files next to a reference split (CDVAE-format CSV).

    python benchmarks/denovo_composition_stats.py random=/tmp/dn1000.extxyz \
        confidence=/tmp/dnc.extxyz --reference $MATGEN_DATA_DIR/mp20_reduced/test.csv \
        --out benchmarks/results/denovo_composition_cpu.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

BINS = ((1, 4), (5, 8), (9, 14), (15, 20))


def _bin(n: int) -> str:
    for lo, hi in BINS:
        if lo <= n <= hi:
            return f"{lo}-{hi}"
    return f">{BINS[-1][1]}"


def composition_stats(cells: list[list[str]]) -> dict:
    """Per size bin: crystals, mean elements and mean singletons per crystal; the share of
    crystals per element count; the share of crystals holding each element."""
    per_bin: dict[str, list[tuple[int, int]]] = {}
    holds: Counter = Counter()
    nel = Counter()
    for symbols in cells:
        c = Counter(symbols)
        per_bin.setdefault(_bin(len(symbols)), []).append(
            (len(c), sum(1 for v in c.values() if v == 1)))
        holds.update(c.keys())
        nel[len(c)] += 1
    n = len(cells)
    return {
        "num_crystals": n,
        "by_cell_size": {b: {"crystals": len(v), "elements": float(np.mean([e for e, _ in v])),
                             "singletons": float(np.mean([s for _, s in v]))}
                         for b, v in sorted(per_bin.items())},
        "num_elements_share": {str(k): nel[k] / n for k in sorted(nel)},
        "element_share": {e: holds[e] / n for e in sorted(holds)},
    }


def _generated(path: Path) -> list[list[str]]:
    from ase.io import read

    return [a.get_chemical_symbols() for a in read(path, index=":")]


def _reference(path: Path) -> list[list[str]]:
    from pymatgen.core import Structure

    return [[str(s.specie) for s in Structure.from_str(c, fmt="cif")]
            for c in pd.read_csv(path)["cif"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("generated", nargs="+", help="NAME=file.extxyz")
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default=None)
    a = ap.parse_args(argv)
    sets = {"reference": composition_stats(_reference(a.reference))}
    for item in a.generated:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"error: {item!r}: give NAME=file.extxyz")
        sets[name] = composition_stats(_generated(Path(path)))
    ref = sets["reference"]["element_share"]
    for name, s in sets.items():
        if name != "reference":  # the elements furthest from the reference share
            diff = {e: s["element_share"].get(e, 0.0) - ref.get(e, 0.0)
                    for e in set(ref) | set(s["element_share"])}
            s["most_over"] = dict(sorted(diff.items(), key=lambda x: -x[1])[:8])
            s["most_under"] = dict(sorted(diff.items(), key=lambda x: x[1])[:8])
    doc = {"reference_file": str(a.reference), "note": a.note, "sets": sets}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    for name, s in sets.items():
        print(name, {b: (v["elements"], v["singletons"]) for b, v in s["by_cell_size"].items()})


if __name__ == "__main__":
    main()
