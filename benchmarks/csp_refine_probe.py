"""Probes of the CSP loose matches (issue #16: the RMSE goal): what kind of error they are, and
whether a cheap post-processing of the sampled structures fixes them. No reference structure
is used by a refinement; the references only score the result afterwards (`matgen evaluate`).

Modes (each reads the sampled extxyz of `matgen sample --task csp`):

``framework``: for every loose match in a per-structure CSV of `matgen evaluate` (RMS > 0.2),
the RMS of the same pair under pymatgen's ``FrameworkComparator`` (species ignored). A loose
match whose framework matches tightly is a site-assignment (anti-site) error; one whose
framework is off is an arrangement error.

``lattice``: for every row of a per-structure CSV, how far the sampled cell is from the
reference's, by basis-free numbers of the Niggli-reduced cells: the relative error of the volume
per atom, of the three sorted lengths (largest of the three) and the largest difference of the
sorted angles; summarised by group (tight matches, RMS <= 0.05; loose, > ``--loose``; unmatched).
If loose matches carried cell errors the tight ones do not, the lattice would be the place to
work on; if their cells are as good, the error is in the arrangement of the atoms.

``symmetrize``: each structure replaced by spglib's idealised primitive standard cell at
``--symprec`` (kept only when the atom count divides and the species set is unchanged).

``reassign``: the species of each structure re-assigned by the denoiser's own per-site
posterior: every atom's type is masked in turn (the de novo mode's mask class) at time
``--time``, the type logits read, and the assignment with the given composition that
maximises the summed log-probability (Hungarian) taken when it beats the sampled one by more
than ``--margin`` nats. A model-internal judge, not an MLIP (an MLIP trained on MP relaxations
has seen the test crystals).

    python benchmarks/csp_refine_probe.py framework --generated S.extxyz \\
        --per-structure S.csp_per_structure.csv --reference val.csv
    python benchmarks/csp_refine_probe.py lattice --generated S.extxyz \\
        --per-structure S.csp_per_structure.csv --reference val.csv
    python benchmarks/csp_refine_probe.py symmetrize --generated S.extxyz --out T.extxyz \\
        --symprec 0.1
    python benchmarks/csp_refine_probe.py reassign --generated S.extxyz --out T.extxyz --time 0.05
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def _pairs(args, loose_only: bool = False):
    """``(per-structure row, sampled structure, reference structure)`` for every row of the
    per-structure CSV (only loose matches, RMS > ``args.loose``, with ``loose_only``)."""
    import pandas as pd
    from ase.io import read
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    per = pd.read_csv(args.per_structure)
    ref = pd.read_csv(args.reference).set_index("material_id")
    frames = read(args.generated, index=":")
    if loose_only:
        per = per[per.matched & (per.rms_dist > args.loose)]
    for _, r in per.iterrows():
        yield (r, AseAtomsAdaptor.get_structure(frames[int(r.frame_index)]),
               Structure.from_str(ref.loc[r.material_id, "cif"], fmt="cif"))


def framework(args) -> dict:
    import pandas as pd
    from pymatgen.analysis.structure_matcher import FrameworkComparator, StructureMatcher

    from matgen.evaluation import MatcherConfig

    per = pd.read_csv(args.per_structure)
    tol = MatcherConfig()  # the tolerances `matgen evaluate` matched with, species ignored
    fm = StructureMatcher(stol=tol.stol, angle_tol=tol.angle_tol, ltol=tol.ltol,
                          comparator=FrameworkComparator())
    rows = []
    for r, gen, want in _pairs(args, loose_only=True):
        fr = fm.get_rms_dist(gen, want)
        rows.append({"material_id": r.material_id, "num_atoms": len(want),
                     "rms": float(r.rms_dist),
                     "rms_framework": None if fr is None else float(fr[0])})
    fw = np.array([r["rms_framework"] for r in rows if r["rms_framework"] is not None])
    return {"matched": int(per.matched.sum()), "loose": len(rows),
            "framework_tight_lt_0.1": int((fw < 0.1).sum()),
            "framework_rms_median": float(np.median(fw)) if len(fw) else None, "rows": rows}


def _cell_numbers(structure) -> tuple[float, np.ndarray, np.ndarray]:
    """Volume per atom, sorted lengths and sorted angles of the Niggli-reduced cell."""
    lat = structure.lattice.get_niggli_reduced_lattice()
    return (lat.volume / len(structure), np.sort(lat.abc), np.sort(lat.angles))


def lattice(args) -> dict:
    import pandas as pd

    rows = []
    for r, gen, want in _pairs(args):
        (vg, lg, ag), (vw, lw, aw) = _cell_numbers(gen), _cell_numbers(want)
        group = ("unmatched" if not r.matched else "tight" if r.rms_dist <= 0.05
                 else "loose" if r.rms_dist > args.loose else "middle")
        rows.append({"material_id": r.material_id, "num_atoms": len(want), "group": group,
                     "volume_err": float(abs(vg / vw - 1)),
                     "length_err": float(np.max(np.abs(lg / lw - 1))),
                     "angle_err": float(np.max(np.abs(ag - aw)))})
    df = pd.DataFrame(rows)
    out = {"rows_total": len(df), "loose_above": args.loose, "groups": {}}
    for g, sub in df.groupby("group"):
        out["groups"][g] = {"n": len(sub), "num_atoms_median": float(sub.num_atoms.median()),
                            **{f"{k}_median": round(float(sub[k].median()), 4)
                               for k in ("volume_err", "length_err", "angle_err")},
                            **{f"{k}_p90": round(float(sub[k].quantile(0.9)), 4)
                               for k in ("volume_err", "length_err", "angle_err")}}
    out["rows"] = rows
    return out


def symmetrize(args) -> dict:
    import spglib
    from ase import Atoms
    from ase.io import read, write

    out, changed = [], 0
    for a in read(args.generated, index=":"):
        cell = (np.array(a.cell[:]), a.get_scaled_positions(), a.numbers)
        std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False,
                                      symprec=args.symprec)
        b = a
        if std is not None:
            lat, pos, num = std
            if len(num) and len(a) % len(num) == 0 and set(num) == set(a.numbers):
                b = Atoms(numbers=num, cell=lat, scaled_positions=pos, pbc=True)
                b.info = dict(a.info)
                changed += 1
        out.append(b)
    write(args.out, out, format="extxyz")
    return {"structures": len(out), "idealised": changed, "symprec": args.symprec}


def reassign(args) -> dict:
    import torch
    from ase.io import read, write
    from scipy.optimize import linear_sum_assignment

    from matgen.crystal import CrystalBatch
    from matgen.diffusion import call_denoiser
    from matgen.generate import load_for_sampling

    model, _, _, _ = load_for_sampling(args.checkpoint, "cpu")
    model.eval()
    out, changed, gains = [], 0, []
    with torch.no_grad():
        for a in read(args.generated, index=":"):
            z, n = a.numbers.copy(), len(a)
            if len(set(z)) < 2:
                out.append(a)
                continue
            f = torch.tensor(a.get_scaled_positions() % 1.0, dtype=torch.float32)
            lat = torch.tensor(np.array(a.cell[:]), dtype=torch.float32)
            zz = torch.tensor(z, dtype=torch.long).repeat(n, 1)
            zz[torch.arange(n), torch.arange(n)] = 0  # copy i: atom i's type masked
            batch = CrystalBatch(atomic_numbers=zz.reshape(-1), frac_coords=f.repeat(n, 1),
                                 lattice=lat.unsqueeze(0).repeat(n, 1, 1),
                                 num_atoms=torch.full((n,), n, dtype=torch.long))
            o = call_denoiser(model, batch, torch.full((n,), args.time), None)
            lp = torch.log_softmax(o.type_logits.float(), -1).reshape(n, n, -1)
            lp = lp[torch.arange(n), torch.arange(n)].numpy()
            slots = np.sort(z)
            r, c = linear_sum_assignment(-lp[:, slots - 1])
            newz = np.empty(n, dtype=int)
            newz[r] = slots[c]
            gain = float(lp[np.arange(n), newz - 1].sum() - lp[np.arange(n), z - 1].sum())
            gains.append(gain)
            if (newz != z).any() and gain > args.margin:
                a = a.copy()
                a.numbers = newz
                changed += 1
            out.append(a)
    write(args.out, out, format="extxyz")
    return {"structures": len(out), "reassigned": changed, "time": args.time,
            "margin": args.margin, "gain_median": float(np.median(gains)) if gains else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["framework", "lattice", "symmetrize", "reassign"])
    ap.add_argument("--generated", required=True)
    ap.add_argument("--out", help="refined extxyz (symmetrize, reassign)")
    ap.add_argument("--per-structure",
                    help="framework, lattice: matgen evaluate's per-structure CSV")
    ap.add_argument("--reference", help="framework, lattice: the reference CSV")
    ap.add_argument("--loose", type=float, default=0.2,
                    help="framework: RMS above which a match is loose")
    ap.add_argument("--symprec", type=float, default=0.1)
    ap.add_argument("--time", type=float, default=0.05, help="reassign: time of the masked call")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="reassign: nats a new assignment must gain")
    ap.add_argument("--checkpoint", default=None, help="reassign: the denoiser (default: shipped)")
    ap.add_argument("--json", help="write the summary here too")
    args = ap.parse_args()
    scored = args.mode in ("framework", "lattice")
    if not scored and not args.out:
        ap.error(f"{args.mode} needs --out")
    if scored and not (args.per_structure and args.reference):
        ap.error(f"{args.mode} needs --per-structure and --reference")
    res = {"framework": framework, "lattice": lattice, "symmetrize": symmetrize,
           "reassign": reassign}[args.mode](args)
    text = json.dumps(res, indent=1)
    brief = {k: v for k, v in res.items() if k != "rows"}
    print(text if not scored else json.dumps(brief, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
