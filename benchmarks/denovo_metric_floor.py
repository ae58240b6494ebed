"""What an ideal de novo generator scores under the README's de novo protocol (1,000 samples
scored against the public test split with ``matgen evaluate --task gen``).

The "ideal generator" draws real MP-20 crystals from the distribution the model learns: random
sets of 1,000 rows of mp20_reduced train (seeded draws), and the 1,000 val rows. Each set is
scored exactly as generated crystals are (:func:`matgen.evaluation.evaluate_generation`, CDVAE
SMACT rules), so the spread over draws is the noise floor of each metric at this sample size and
the mean is its ceiling: a goal tighter than what real crystals reach cannot be met by any model.
Uniqueness and novelty are off (train rows are not novel by construction); COV is computed for
the first ``--cov-draws`` sets only (CrystalNN fingerprints, ~0.4 s a crystal).

    python benchmarks/denovo_metric_floor.py --draws 20 --cov-draws 2 --workers 2 \
        --out benchmarks/results/denovo_metric_floor.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from matgen.evaluation import (
    GenConfig,
    evaluate_generation,
    generated_from_structures,
    read_reference_csv,
)

KEYS = ("comp_valid", "struct_valid", "valid", "wdist_density", "wdist_num_elements",
        "cov_recall", "cov_precision")


def _structures(path: Path) -> list[Structure]:
    """A split's crystals, parsed once (MP-20's own CIFs all parse)."""
    return [Structure.from_str(c, fmt="cif") for c in pd.read_csv(path)["cif"]]


def _score(structures: list[Structure], reference, coverage: bool, workers: int) -> dict:
    gen = generated_from_structures(structures)
    cfg = GenConfig(dataset="mp20", coverage=coverage, uniqueness=False, novelty=False)
    m = evaluate_generation(gen, reference, config=cfg, workers=workers, progress=False).metrics
    out = {k: m.get(k) for k in KEYS if m.get(k) is not None}
    return out


def _summary(rows: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        v = np.array([r[k] for r in rows if k in r], dtype=float)
        if len(v):
            out[k] = {"n": len(v), "mean": float(v.mean()), "std": float(v.std(ddof=1))
                      if len(v) > 1 else None, "min": float(v.min()), "max": float(v.max()),
                      "p90": float(np.quantile(v, 0.9))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("MATGEN_DATA_DIR", "../shared/datasets"))
    ap.add_argument("--draws", type=int, default=20, help="random train sets")
    ap.add_argument("--size", type=int, default=1000, help="crystals per set (the protocol's 1,000)")
    ap.add_argument("--cov-draws", type=int, default=2, help="sets that also get COV")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    d = Path(a.data_dir) / "mp20_reduced"
    reference = read_reference_csv(d / "test.csv")
    train = _structures(d / "train.csv")
    val = _structures(d / "val.csv")
    t0 = time.time()
    rows = []
    for i in range(a.draws):
        pick = np.random.default_rng(i).choice(len(train), a.size, replace=False)
        r = _score([train[j] for j in pick], reference, i < a.cov_draws, a.workers)
        rows.append({"set": f"train draw seed {i}", **r})
        print(json.dumps(rows[-1]), flush=True)
    v = _score(val, reference, True, a.workers)
    res = {
        "what": __doc__.splitlines()[0],
        "how": ("sets of real crystals scored as generated ones against mp20_reduced test: "
                f"{a.draws} random {a.size}-row draws of mp20_reduced train (numpy default_rng "
                "seeds 0..), and the 1,000 val rows; matgen evaluate's CDVAE SMACT rules, COV "
                f"cut-offs of mp20, COV on the first {a.cov_draws} draws and on val"),
        "machine": f"{platform.node()} ({os.cpu_count()} cores), {a.workers} workers",
        "seconds": round(time.time() - t0, 1),
        "train_draws": _summary(rows), "val_1000": v, "per_draw": rows,
    }
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({"train_draws": res["train_draws"], "val_1000": v}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
