"""Compute the CDVAE coverage fingerprints of a reference CSV and save them as a shipped table.

CrystalNN fingerprints cost ~0.4 s per MP-20 crystal, so ``matgen evaluate --task gen`` would
spend most of its time on the (fixed) test split; the table makes that a lookup. Keys are the
sha1 of each CIF text, so a changed row is recomputed, never mismatched. The table is written
after every block of rows and the run resumes where it stopped (rows already in it are skipped).

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

import numpy as np

from matgen.evaluation._gen import FINGERPRINT_TABLE_DIR, _describe, cif_key
from matgen.evaluation._io import read_reference_csv
from matgen.evaluation._parallel import parallel_map


def _load(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not path.exists():
        return {}
    z = np.load(path, allow_pickle=False)
    return {str(k): (s, c) for k, s, c in zip(z["keys"], z["struct_fp"], z["comp_fp"], strict=True)}


def _save(path: Path, table: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    keys = sorted(table)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        keys=np.array(keys),
        struct_fp=np.array([table[k][0] for k in keys], dtype=float).reshape(len(keys), -1),
        comp_fp=np.array([table[k][1] for k in keys], dtype=float).reshape(len(keys), -1),
    )
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--block", type=int, default=100, help="rows between saves")
    ap.add_argument("--start", type=int, default=0, help="first row (to split a run)")
    ap.add_argument("--stop", type=int, default=None, help="row after the last")
    args = ap.parse_args()
    ref = read_reference_csv(args.csv)
    FINGERPRINT_TABLE_DIR.mkdir(parents=True, exist_ok=True)
    out = FINGERPRINT_TABLE_DIR / f"fp_{args.name}.npz"
    table = _load(out)
    rows = ref.cifs[args.start : args.stop]
    todo = [c for c in dict.fromkeys(rows) if cif_key(c) not in table]
    print(f"{len(table)} in table, {len(todo)} to compute", flush=True)
    t0 = time.perf_counter()
    failed = 0
    for lo in range(0, len(todo), args.block):
        block = todo[lo : lo + args.block]
        res = parallel_map(
            _describe, [(c, True, True) for c in block], workers=args.workers, progress=False
        )
        for c, r in zip(block, res, strict=True):
            if r["struct_fp"] is None:
                failed += 1
            else:
                table[cif_key(c)] = (np.asarray(r["struct_fp"]), np.asarray(r["comp_fp"]))
        _save(out, table)
        print(f"{len(table)} in table ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(
        f"done: {len(table)} fingerprints, {failed} failed -> {out} "
        f"({out.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
