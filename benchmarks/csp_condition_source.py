"""Does CSP also pay for the barely trained unconditioned input? A diagnostic on a labelled split
(val: its labels are not a method, since a user of CSP does not know the properties of the
crystal to be predicted): CSP of the first ``--rows`` rows of the split with a checkpoint, once
unconditioned (every condition NaN, as ``matgen sample --task csp``) and once conditioned on each
row's own property values (all conditions at once, guidance 1), same seed. Writes both as extxyz
(frames carry the rows' ``material_id``) for ``matgen evaluate --task csp``.

    python benchmarks/csp_condition_source.py --split $MATGEN_DATA_DIR/mp20_reduced/val.csv \
        --rows 200 --seed 0 --out /tmp/csp_cond
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import torch
from ase import Atoms
from ase.io import write

from matgen.generate import SampleSpec, plan_sampling, sample_batches


def row_values(split: pd.DataFrame, ids: list[str], names: list[str]) -> dict[str, torch.Tensor]:
    """``{name: (R,)}`` the split's labels for the requests' ``material_id`` s, in their order."""
    by_id = split.set_index("material_id")
    return {n: torch.tensor(by_id.loc[ids, n].to_numpy(dtype=float), dtype=torch.float64)
            for n in names}


def run(spec: SampleSpec, split: pd.DataFrame | None) -> list[Atoms]:
    """CSP frames of ``spec``; with ``split``, each request conditioned on its row's labels."""
    plan = plan_sampling(spec.checked(), lambda _m: None)
    if split is not None:
        names = list(plan.meta.get("conditions") or {})
        plan = dataclasses.replace(plan, values=row_values(
            split, [r.material_id for r in plan.requests], names))
    frames = []
    for item in sample_batches(plan):
        c = item.crystals
        z, f, lo = c.atomic_numbers.tolist(), c.frac_coords.double().numpy(), 0
        for b, n in enumerate(c.num_atoms.tolist()):
            a = Atoms(numbers=z[lo:lo + n], scaled_positions=f[lo:lo + n],
                      cell=c.lattice[b].double().numpy(), pbc=True)
            a.info["material_id"] = c.ids[b]
            frames.append(a)
            lo += n
    return frames


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--split", type=Path, required=True, help="a labelled CSV (val)")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True, help="folder for the files")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    split = pd.read_csv(a.split).head(a.rows)
    rows_csv = a.out / "rows.csv"
    split.to_csv(rows_csv, index=False)
    base = SampleSpec(checkpoint=a.checkpoint, task="csp", num=1, compositions_from=rows_csv,
                      seed=a.seed, device=a.device, batch_size=a.batch_size)
    names = list(plan_sampling(base.checked(), lambda _m: None).meta.get("conditions") or {})
    cond = dataclasses.replace(base, conditions=[f"{n}=0" for n in names])
    doc = {"split": str(a.split), "rows": a.rows, "seed": a.seed, "conditions": names}
    for tag, spec, labels in (("unconditioned", base, None), ("own_labels", cond, split)):
        t0 = time.perf_counter()
        frames = run(spec, labels)
        write(a.out / f"{tag}.extxyz", frames, format="extxyz")
        doc[tag] = {"frames": len(frames), "seconds": round(time.perf_counter() - t0, 1)}
        print(tag, doc[tag])
    (a.out / "run.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
