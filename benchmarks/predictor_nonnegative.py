"""The shipped band-gap predictor on the mp20_reduced test split with and without clipping its
mean at 0 (``matgen.surrogates._predictor.NONNEGATIVE_LABELS``): how many crystals got a negative
predicted gap, and the MAE and interval coverage either way.

    python benchmarks/predictor_nonnegative.py --out benchmarks/results/predictor_nonnegative_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import warnings

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import pandas as pd
    from pymatgen.core import Structure

    from matgen.data import resolve_source
    from matgen.surrogates import load_default_predictors

    src = resolve_source("mp20", a.split)
    df = pd.read_csv(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in df.cif]
    pred = {p.label: p for p in load_default_predictors()}["band_gap"]
    y = df.band_gap.to_numpy(dtype=float)
    rows = {}
    # the same network under a label outside NONNEGATIVE_LABELS gives the unclipped means
    unclipped = dataclasses.replace(pred, label="band_gap_unclipped")
    for name, p in (("clipped", pred), ("unclipped", unclipped)):
        r = p.predict(structures)
        z = np.abs(r.mean - y) / r.std
        rows[name] = {"mae_eV": round(float(np.abs(r.mean - y).mean()), 4),
                      "negative_means": int((r.mean < 0).sum()),
                      "min_mean_eV": round(float(r.mean.min()), 4),
                      "coverage_68": round(float((z <= 1).mean()), 3),
                      "coverage_95": round(float((z <= 1.96).mean()), 3)}
    out = {"what": __doc__.splitlines()[0] + " " + " ".join(__doc__.splitlines()[1:3]),
           "data": f"{src.name} of mp20 ({len(df)} rows)", "machine": f"CPU ({platform.machine()})",
           "command": f"python benchmarks/predictor_nonnegative.py --split {a.split} --out {a.out}",
           "results": rows}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
