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
import sys
from pathlib import Path

import pandas as pd
import torch

from matgen.generate import SampleSpec, plan_sampling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denovo_condition_source import sample_arms  # one way to sample and write the arms


def row_values(split: pd.DataFrame, ids: list[str], names: list[str]) -> dict[str, torch.Tensor]:
    """``{name: (R,)}`` the split's labels for the requests' ``material_id`` s, in their order."""
    by_id = split.set_index("material_id")
    return {n: torch.tensor(by_id.loc[ids, n].to_numpy(dtype=float), dtype=torch.float64)
            for n in names}


def own_labels(split: pd.DataFrame):
    """The function of a plan that gives each request its row's labels (for ``sample``)."""
    def values(plan) -> dict[str, torch.Tensor]:
        names = list(plan.meta.get("conditions") or {})
        return row_values(split, [r.material_id for r in plan.requests], names)
    return values


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
    doc |= sample_arms(a.out, [("unconditioned", base, None),
                               ("own_labels", cond, own_labels(split))])
    (a.out / "run.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
