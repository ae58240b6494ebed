"""Convergence test that fixes the DFT oracle's plane-wave cutoff and k-point density (issue 21).

For two small MP-20 test intermetallics of the benchmark's kind (TiPd and BeRh: a hard
first-row element, 3d/4d transition metals with semicore states) and their elemental references, at the
MP geometries (no relaxation), the GPAW PBE formation energy per atom is computed:

- against the cutoff ``--ecuts`` at k-point density ``--k-for-ecut``, relative to the largest
  cutoff;
- against the k-point density ``--kdens`` at cutoff ``--ecut-for-k``, relative to the densest.

Chosen: the smallest cutoff and the smallest density whose formation energies are all within
``--tol`` (eV/atom) of the converged ones (and stay so for every larger value). The MP
comparison target is 0.05 eV/atom, so 5 meV of numerical error is a tenth of it. The cutoff
must also keep the Pulay stress small, because the oracle relaxes cells and GPAW's new code has
no Pulay-stress correction: estimated from the slope of each structure's total energy per atom
between neighbouring cutoffs, (2/3) ecut |dE/d ecut| / V, at most ``--max-pulay-gpa`` (2 GPa
moves a cell of bulk modulus ~100 GPa by ~2 % in volume, ~1 meV/atom in energy). matgen/dft/_settings.py carries the chosen values
(tests/dft/test_settings.py checks that they agree with the result file).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dft_convergence.py \
        --out benchmarks/results/dft_convergence.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dft_formation_mp20 import ROOT, data_dir, load_rows

SYSTEMS = ("mp-1056985", "mp-11276")  # TiPd, BeRh
EV_PER_A3_IN_GPA = 160.21766


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ecuts", type=float, nargs="+", default=[300, 350, 400, 450, 550])
    p.add_argument("--k-for-ecut", type=float, default=3.0)
    p.add_argument("--kdens", type=float, nargs="+", default=[2.0, 2.5, 3.0, 4.0, 5.0])
    p.add_argument("--ecut-for-k", type=float, default=400.0)
    p.add_argument("--tol", type=float, default=0.005)
    p.add_argument("--max-pulay-gpa", type=float, default=2.0)
    p.add_argument("--cache", default=str(ROOT / "runs" / "dft_cache"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dft_convergence.json"))
    args = p.parse_args(argv)

    from matgen._files import atomic_write_text
    from matgen.dft import DFTService, DFTSettings, ElementalReferences
    from matgen.dft._references import ReferenceStructures

    df = load_rows("test", ids=SYSTEMS).set_index("material_id")
    structures = ReferenceStructures(data_dir())
    out: dict = {
        "command": "OMP_NUM_THREADS=1 " + " ".join([".venv/bin/python", *sys.argv]),
        "systems": {m: df.loc[m, "pretty_formula"] for m in SYSTEMS},
        "tol_ev_per_atom": args.tol,
        "max_pulay_stress_gpa": args.max_pulay_gpa,
        "geometry": "MP-20 structures as given, no relaxation",
        "ecut_scan": {"kpt_density": args.k_for_ecut, "points": []},
        "k_scan": {"ecut_ev": args.ecut_for_k, "points": []},
    }

    def point(ecut: float, k: float) -> dict:
        settings = DFTSettings(ecut_ev=ecut, kpt_density=k, relax=False, time_limit_s=1200)
        service = DFTService(args.cache, settings)
        refs = ElementalReferences(service, structures)
        t0 = time.perf_counter()
        e_form, walls, per_atom = {}, {}, {}
        for m in SYSTEMS:
            atoms = df.loc[m, "atoms"]
            res = service.run(atoms, label=f"conv_{m}")
            e_form[m] = refs.formation_energy_per_atom(res)
            walls[m] = round(res.wall_s, 1)
            per_atom[m] = (res.energy_per_atom, atoms.get_volume() / len(atoms))
            for el in sorted(set(atoms.get_chemical_symbols())):
                r = refs.result(el)
                v = r.relaxed_atoms().get_volume() / r.natoms
                per_atom[el] = (r.energy_per_atom, v)
        return {
            "ecut_ev": ecut,
            "kpt_density": k,
            "e_form": e_form,
            "compound_wall_s": walls,
            "wall_s_incl_refs": round(time.perf_counter() - t0, 1),
            "energy_and_volume_per_atom": per_atom,
        }

    def pulay(points: list[dict]) -> None:
        """Pulay stress estimate at each cutoff, from the slope of the total energy per atom to
        the next cutoff: (2/3) * ecut * |dE/d ecut| / V, in GPa. A cell relaxation at that
        cutoff is pushed by this much; its energy error is about V * s^2 / (2 B)."""
        for a, b in itertools.pairwise(points):
            worst = 0.0
            for name, (e, v) in a["energy_and_volume_per_atom"].items():
                slope = (b["energy_and_volume_per_atom"][name][0] - e) / (
                    b["ecut_ev"] - a["ecut_ev"]
                )
                worst = max(worst, 2 / 3 * a["ecut_ev"] * abs(slope) / v * EV_PER_A3_IN_GPA)
            a["pulay_stress_gpa_max"] = round(worst, 2)

    def chosen(points: list[dict], axis: str) -> float:
        ref = points[-1]["e_form"]
        for pt in points:
            pt["max_dev_from_converged"] = max(abs(pt["e_form"][m] - ref[m]) for m in SYSTEMS)

        def passes(pt: dict) -> bool:
            return pt["max_dev_from_converged"] <= args.tol and (
                pt.get("pulay_stress_gpa_max", 0.0) <= args.max_pulay_gpa
            )

        # the smallest value from which every larger one passes too
        good = [pt[axis] for i, pt in enumerate(points) if all(map(passes, points[i:]))]
        return min(good)

    def save() -> None:
        atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")

    for ecut in sorted(args.ecuts):
        out["ecut_scan"]["points"].append(point(ecut, args.k_for_ecut))
        print(out["ecut_scan"]["points"][-1], flush=True)
        save()
    pulay(out["ecut_scan"]["points"])
    out["chosen_ecut_ev"] = chosen(out["ecut_scan"]["points"], "ecut_ev")
    save()
    for k in sorted(args.kdens):
        out["k_scan"]["points"].append(point(args.ecut_for_k, k))
        print(out["k_scan"]["points"][-1], flush=True)
        save()
    out["chosen_kpt_density"] = chosen(out["k_scan"]["points"], "kpt_density")
    save()
    print("chosen:", out["chosen_ecut_ev"], "eV,", out["chosen_kpt_density"], "per Å^-1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
