"""Chemical systems whose DFT hull the shared data can complete on a small machine (issue 21).

The DFT oracle's hull (:class:`matgen.dft.DFTHull`) computes the competing phases MP's hull
names with structures from the shared MP data (MP-20, then MPTS-52); a phase without one leaves
the hull incomplete and ``dft_e_above_hull`` a lower bound. This lists the ternary systems of
``--elements`` (metals and metalloids MP corrects in no compound, with elemental reference
crystals of at most ``--max-ref-atoms`` atoms) in which every phase on MP's hull has a structure
in the shared data, at most ``--max-atoms`` atoms each (primitive cell), and at least one ternary
phase, cheapest first: the spaces where a campaign's candidates can be DFT-verified against a
complete hull on a laptop (``configs/campaigns/demo_dft.yaml``).

    MATGEN_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/dft_complete_hulls.py \
        --out benchmarks/results/dft_complete_hulls.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = (
    "Li", "Be", "Na", "Mg", "Al", "K", "Ca", "Sc", "Ti", "V", "Cu", "Zn", "Ga", "Ge", "Si", "Sr",
    "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Ba", "Hf", "Ta", "W", "Ir",
    "Pt", "Au", "Pb", "Bi",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", nargs="+", default=ELEMENTS)
    p.add_argument("--max-atoms", type=int, default=16)
    p.add_argument("--max-ref-atoms", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dft_complete_hulls.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    from pymatgen.core import Composition, Structure

    from matgen._files import atomic_write_text
    from matgen.dft import MP20Index, ReferenceStructures
    from matgen.surrogates import ConvexHull

    index = MP20Index()
    if index.data_dir is None:
        print("set MATGEN_DATA_DIR (the shared datasets)", file=sys.stderr)
        return 2
    hull = ConvexHull.from_mp(index.data_dir, elemental="mp")
    refs = ReferenceStructures(index)
    ref_atoms: dict[str, int | None] = {}
    for el in args.elements:
        try:
            ref_atoms[el] = len(refs.get(el).atoms)
        except Exception:  # noqa: BLE001 - no reference crystal: the element is left out
            ref_atoms[el] = None
    usable = [e for e in args.elements if ref_atoms[e] and ref_atoms[e] <= args.max_ref_atoms]
    sizes: dict[str, int | None] = {}

    def atoms_of(formula: str) -> int | None:
        if formula not in sizes:
            rows = index.rows(formula)
            sizes[formula] = (
                len(Structure.from_str(rows[0][2], fmt="cif").get_primitive_structure())
                if rows
                else None
            )
        return sizes[formula]

    found, n_systems = [], 0
    for tri in itertools.combinations(sorted(usable), 3):
        n_systems += 1
        pd = hull.phase_diagram("-".join(tri))
        phases = sorted(
            {e.composition.reduced_formula for e in pd.stable_entries if len(e.composition) > 1}
        )
        ternary = [f for f in phases if len(Composition(f).elements) == 3]
        if not ternary:
            continue
        n = [atoms_of(f) for f in phases]
        if any(x is None or x > args.max_atoms for x in n):
            continue
        found.append({"chemsys": "-".join(tri), "phases": dict(zip(phases, n, strict=True)),
                      "atoms_total": sum(n)})
    found.sort(key=lambda r: (r["atoms_total"], r["chemsys"]))
    out = {
        "what": __doc__.split("\n")[0],
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "elements": usable,
        "left_out_elements": {e: ref_atoms[e] for e in args.elements if e not in usable},
        "max_atoms": args.max_atoms,
        "ternary_systems_checked": n_systems,
        "complete": found,
    }
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")
    for r in found:
        print(r["chemsys"], r["atoms_total"], r["phases"])
    print(f"{len(found)} of {n_systems} ternary systems have a complete small hull in the data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
