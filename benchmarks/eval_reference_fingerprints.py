"""Compute the CDVAE coverage fingerprints of a reference CSV and save them as a shipped table.

CrystalNN fingerprints cost ~0.4 s per MP-20 crystal, so ``matgen evaluate --task gen`` would
spend most of its time on the (fixed) test split; the table makes that a lookup. Keys are the
sha1 of each CIF text, so a changed row is recomputed, never mismatched.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/eval_reference_fingerprints.py \\
        ../shared/datasets/mp20_reduced/test.csv --name mp20_reduced_test --workers 2

Writes ``matgen/evaluation/_data/fp_<name>.npz`` (derived from the public dataset named in
``datasets/README``: MP-20 / perov-5 / carbon-24 of CDVAE, MIT; Materials Project CC-BY 4.0).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from matgen.evaluation._gen import FINGERPRINT_TABLE_DIR, _describe, save_fingerprint_table
from matgen.evaluation._io import read_reference_csv
from matgen.evaluation._parallel import parallel_map


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    ref = read_reference_csv(args.csv)
    t0 = time.perf_counter()
    res = parallel_map(
        _describe, [(c, True, True) for c in ref.cifs], workers=args.workers, desc="fingerprints"
    )
    FINGERPRINT_TABLE_DIR.mkdir(parents=True, exist_ok=True)
    out = FINGERPRINT_TABLE_DIR / f"fp_{args.name}.npz"
    n = save_fingerprint_table(out, ref.cifs, res)
    print(
        f"{n}/{len(ref)} fingerprints -> {out} ({time.perf_counter() - t0:.0f} s, "
        f"{out.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
