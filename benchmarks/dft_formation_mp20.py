"""GPAW formation energies vs the Materials Project on small MP-20 intermetallics (issue 21).

Picks the MP-20 test structures (``mp20_reduced/test.csv``) of chemical systems where the
Materials Project applies no energy corrections, smallest cells first, relaxes each (cell and
positions) with the DFT service under the convergence-tested settings, computes the formation
energy against GPAW elemental references relaxed the same way, and compares with the CSV's
``formation_energy_per_atom``. One core (OMP_NUM_THREADS=1, one worker process at a time).

Selection rule (deterministic, written into the result):
- every element is a metal without an MP correction: no anion that MP2020 or the legacy scheme
  corrects (O, S, Se, Te, F, Cl, Br, I, N, H, Si, Sb, ...), no metalloid (B, C, Si, Ge, As, Sb,
  Te), and no element that gets +U in MP (those get it only in oxides / fluorides, which are
  excluded anyway);
- no f-block element (MP runs them with special setups; 4f physics is not what this checks),
  none of the elements whose MP reference structure is large or magnetically complex (Mn: 29
  atoms; Cr: antiferromagnetic; B, Ga, Hg, In, Sn, P, ... cost or ambiguity), and no noble gas;
- at least two elements; sorted by the number of atoms in the cell, then by material_id.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft_formation_mp20.py --n 12 \
        --out benchmarks/results/dft_formation_mp20.json

``--static-compounds`` skips the compounds' relaxation (one SCF at the MP geometry, already
PBE-relaxed by MP): a low-symmetry 2-atom cell costs ~5 SCF-minutes at density 4 on a shared
core, a relaxation several of those. The references are relaxed either way (ASE's fallback
structures have experimental, not PBE, lattice constants).

``--corrected``: the other systems, those MP corrects (oxides, fluorides, chlorides, nitrides;
PBE+U for the oxides / fluorides of Co, Cr, Fe, Mn, Mo, Ni, V, W), under the DFT oracle's ``mp``
scheme (:mod:`matgen.dft._corrections`): PBE+U at MP's U, molecular references (O2 triplet, F2,
Cl2, N2) at MP's geometry. Rule: MP-20 test rows on MP's hull (e_above_hull <= 1 meV/atom) with
2-3 elements, that MP corrects, without f-block, an element gpaw-data lacks or one whose
reference crystal is missing or has more than 16 atoms (Mn, S), sorted by atoms per cell then
material_id: the first ``--n``, then the first ``--n-plus-u`` PBE+U rows. Each row gives the GPAW
formation energy uncorrected (``gpaw_e_form_raw``), with the MP hull's legacy corrections (the scale of
matgen's hull and MLIP scores; compared with Matbench mp_e_form's lowest value for the formula,
``mp_legacy_e_form``) and with MP2020's (the scale of MP-20's own ``formation_energy_per_atom``,
compared in ``error``).

The result JSON is rewritten after every structure, so a killed run keeps its rows, and a
second run takes finished calculations from the cache (``--cache``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# metals MP corrects in no compound of metals only (+U applies only with O or F present)
ALLOWED = frozenset(
    {"Li", "Be", "Na", "Mg", "Al", "K", "Ca", "Sc", "Ti", "V", "Fe", "Co", "Ni", "Cu", "Zn",
     "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "Cs", "Ba", "Hf",
     "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Pb", "Bi"}
)  # fmt: skip


def data_dir() -> Path:
    return Path(os.environ.get("MATGEN_DATA_DIR", ROOT.parent / "shared" / "datasets"))


def load_rows(split: str = "test", ids=None, allowed=ALLOWED):
    """MP-20 rows (only ``ids`` if given, else those whose elements are all in ``allowed``; all
    when None), with their structures as ASE Atoms (column ``atoms``), atom counts and element
    sets."""
    import ast

    import pandas as pd
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    df = pd.read_csv(data_dir() / "mp20_reduced" / f"{split}.csv")
    if ids is not None:
        df = df[df.material_id.isin(ids)].copy()
    elif allowed is not None:
        els = [frozenset(ast.literal_eval(e)) for e in df.elements]
        df = df[[e <= allowed for e in els]].copy()
    df["atoms"] = [AseAtomsAdaptor.get_atoms(Structure.from_str(c, fmt="cif")) for c in df.cif]
    df["natoms"] = [len(a) for a in df.atoms]
    df["element_set"] = [frozenset(a.get_chemical_symbols()) for a in df.atoms]
    return df


NOT_CORRECTED_SET = frozenset({"Tc", "Pm", "Po", "At", "Rn", "Fr", "Ra"})  # no PAW dataset
MAX_REFERENCE_ATOMS = 16  # S's reference crystal (S8 rings) has 48 atoms, Mn's none here


def select_corrected(n: int, n_plus_u: int = 4):
    """The first ``n`` rows of the ``--corrected`` rule (module doc), then the first
    ``n_plus_u`` of the rows MP computes with PBE+U that are not among them already."""
    import pandas as pd
    from pymatgen.core import Element, Structure

    from matgen.dft import ReferenceStructures, correction_note, mp_hubbard

    df = load_rows("test", ids=None, allowed=None)
    structures, big = ReferenceStructures(data_dir()), set()
    for el in sorted(set().union(*df.element_set)):
        try:
            if len(structures.get(el).atoms) > MAX_REFERENCE_ATOMS:
                big.add(el)
        except Exception:  # noqa: BLE001 - no reference crystal at all: leave it out too
            big.add(el)
    keep = []
    for r in df.itertuples(index=False):
        els = r.element_set
        if not 2 <= len(els) <= 3 or r.e_above_hull > 1e-3 or els & (NOT_CORRECTED_SET | big):
            continue
        if any(Element(e).is_lanthanoid or Element(e).is_actinoid for e in els):
            continue
        if correction_note(Structure.from_str(r.cif, fmt="cif")) == "none":
            continue
        keep.append(r.material_id)
    ordered = df[df.material_id.isin(keep)].sort_values(["natoms", "material_id"])
    first = ordered.head(n)
    plus_u = [bool(mp_hubbard(s)[0]) for s in ordered.element_set]
    rest = ordered[plus_u]
    rest = rest[~rest.material_id.isin(first.material_id)].head(n_plus_u)
    return pd.concat([first, rest])


def select(df, n: int, magnetic: bool):
    """The first ``n`` rows of the selection rule (module doc); ``magnetic`` False also leaves
    out systems with a spin-polarised element (Fe, Co, Ni)."""
    keep = df[[len(s) >= 2 and s <= ALLOWED for s in df.element_set]]
    if not magnetic:
        keep = keep[[not (s & {"Fe", "Co", "Ni"}) for s in keep.element_set]]
    return keep.sort_values(["natoms", "material_id"]).head(n)


@functools.cache
def _mp_legacy_table() -> dict[str, float]:
    """Matbench mp_e_form's lowest value per reduced formula (read once: 132,752 rows)."""
    import pandas as pd
    from pymatgen.core import Composition

    df = pd.read_csv(data_dir() / "hull_refs" / "mp_e_form_compositions.csv.gz")
    df["reduced"] = [Composition(f).reduced_formula for f in df.formula]
    return df.groupby("reduced").target.min().to_dict()


def mp_legacy_e_form(formula: str) -> float | None:
    """The lowest Matbench mp_e_form value of ``formula`` (MP's legacy scale: the hull's)."""
    from pymatgen.core import Composition

    v = _mp_legacy_table().get(Composition(formula).reduced_formula)
    return None if v is None else float(v)


def corrected_columns(r, e_form: float) -> dict:
    """The ``--corrected`` comparison of one row: the GPAW formation energy (``mp`` scheme:
    legacy corrections included) taken apart and put on MP2020's scale too."""
    from pymatgen.core import Structure

    from matgen.dft import correction_note, hull_scale_correction
    from matgen.surrogates._mlip import energy_corrections

    st = Structure.from_str(r.cif, fmt="cif")
    legacy = hull_scale_correction(st)
    mp2020 = float(energy_corrections([st], "mp2020")[0])
    raw = e_form - legacy
    ref_legacy = mp_legacy_e_form(r.pretty_formula)
    return {
        "correction_note": correction_note(st),
        "gpaw_e_form_raw": round(raw, 4),
        "correction_legacy": round(legacy, 4),
        "correction_mp2020": round(mp2020, 4),
        "gpaw_e_form_legacy": round(e_form, 4),
        "mp_legacy_e_form": ref_legacy,
        "error_legacy": None if ref_legacy is None else round(e_form - ref_legacy, 4),
        "gpaw_e_form": round(raw + mp2020, 4),
        "error": round(raw + mp2020 - float(r.formation_energy_per_atom), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--magnetic", action="store_true", help="allow Fe, Co, Ni systems")
    p.add_argument("--ids", nargs="+", help="these material_ids instead of the selection rule")
    p.add_argument("--n-plus-u", type=int, default=4, help="--corrected: PBE+U rows added")
    p.add_argument(
        "--corrected",
        action="store_true",
        help="systems MP corrects (oxides, halides, ...), under the oracle's mp scheme (doc)",
    )
    p.add_argument("--cache", default=str(ROOT / "runs" / "dft_cache"))
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds per calculation")
    p.add_argument(
        "--static-compounds",
        action="store_true",
        help="compute the compounds at their MP-20 (MP PBE-relaxed) geometry without relaxing "
        "them; the elemental references are relaxed either way",
    )
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "dft_formation_mp20.json")
    )
    args = p.parse_args(argv)

    from matgen._files import atomic_write_text
    from matgen.dft import DFTService, DFTSettings, ElementalReferences, FormationEnergyError
    from matgen.dft._references import ReferenceStructures

    settings = DFTSettings(time_limit_s=args.time_limit)
    refs = ElementalReferences(DFTService(args.cache, settings), ReferenceStructures(data_dir()))
    if args.static_compounds:
        settings = settings.replace(relax=False)
    service = DFTService(args.cache, settings)
    if args.ids:
        rows = load_rows("test", ids=args.ids).sort_values(["natoms", "material_id"])
    elif args.corrected:
        rows = select_corrected(args.n, args.n_plus_u)
    else:
        rows = select(load_rows("test"), args.n, args.magnetic)
    out: dict = {
        "command": "OMP_NUM_THREADS=1 " + " ".join([".venv/bin/python", *sys.argv]),
        "machine": f"{os.cpu_count()}-core CPU, one worker process, OMP_NUM_THREADS=1",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "settings": settings.physics() | {"corrections": settings.corrections},
        "protocol": (
            "compounds: one SCF at the MP-20 geometry (MP's PBE relaxation); "
            if args.static_compounds
            else "compounds: relaxed (cell + positions, BFGS on FrechetCellFilter), then a fresh SCF; "
        )
        + "elemental references: relaxed the same way, then a fresh SCF",
        "versions": service.versions,
        "selection": (
            f"--ids {' '.join(args.ids)}"
            if args.ids
            else "--corrected rule (benchmarks/dft_formation_mp20.py doc)"
            if args.corrected
            else "MP-20 test rows, elements all in ALLOWED (benchmarks/dft_formation_mp20.py),"
            " >= 2 elements, sorted by atoms per cell then material_id"
            + ("" if args.magnetic else ", no Fe/Co/Ni")
        ),
        "rows": [],
        "references": {},
        "reference_settings": refs.service.settings.physics(),
    }
    for r in rows.itertuples(index=False):
        t0 = time.perf_counter()
        res = service.run(r.atoms, label=r.material_id)
        row = {
            "material_id": r.material_id,
            "formula": r.pretty_formula,
            "natoms": int(r.natoms),
            "mp_e_form": float(r.formation_energy_per_atom),
            "status": res.status,
            "message": res.message,
            "compound_wall_s": round(res.wall_s, 1),
            "relax_steps": res.relax_steps,
            "spin_polarised": res.spin_polarised,
        }
        try:
            e_form = refs.formation_energy_per_atom(res)
            row["gpaw_e_form"] = round(e_form, 4)
            row["error"] = round(e_form - row["mp_e_form"], 4)
            if args.corrected:
                row |= corrected_columns(r, e_form)
        except FormationEnergyError as exc:
            row["gpaw_e_form"] = None
            row["failure"] = str(exc)
        row["total_wall_s_incl_new_refs"] = round(time.perf_counter() - t0, 1)
        out["rows"].append(row)
        for el in sorted(r.element_set):
            ref = refs.result(el)
            out["references"][el] = {
                "source": refs.sources[el],
                "status": ref.status,
                "energy_per_atom": ref.energy_per_atom,
                "natoms": ref.natoms,
                "wall_s": round(ref.wall_s, 1),
            }
        errs = [x["error"] for x in out["rows"] if x.get("gpaw_e_form") is not None]
        out["n_done"] = len(out["rows"])
        out["n_ok"] = len(errs)
        out["mae_ev_per_atom"] = round(sum(map(abs, errs)) / len(errs), 4) if errs else None
        out["mean_signed_error"] = round(sum(errs) / len(errs), 4) if errs else None
        out["max_abs_error"] = round(max(map(abs, errs)), 4) if errs else None
        walls = [x["compound_wall_s"] for x in out["rows"]]
        out["compound_wall_s_median"] = sorted(walls)[len(walls) // 2]
        atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")
        print(
            f"{r.material_id} {r.pretty_formula}: {res.status} mp {row['mp_e_form']:+.3f} "
            f"gpaw {row['gpaw_e_form']} ({row['total_wall_s_incl_new_refs']} s); "
            f"MAE so far {out['mae_ev_per_atom']} on {out['n_ok']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
