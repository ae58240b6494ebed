"""De novo smoke run: `matgen evaluate --task gen` with coverage, novelty and a property.

Stand-in "generated" set: the first N rows of ``mp20_reduced/val.csv`` with 0.05 Å position
noise (val is disjoint from train and test, so novelty should be near 1 and COV-P high).
References: ``mp20_reduced/test.csv`` (fingerprints from the shipped table), training set
``mp20_reduced/train.csv``. Records wall time and the metrics in
``benchmarks/results/eval_gen_smoke.json``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/eval_gen_smoke.py [--num 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("MATGEN_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_gen_smoke.json"
    )
    args = ap.parse_args()

    import pandas as pd
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgen.evaluation._io import parse_cif

    df = pd.read_csv(data / "mp20_reduced" / "val.csv").iloc[: args.num]
    rng = np.random.default_rng(0)
    frames = []
    for i, (cif, gap) in enumerate(zip(df["cif"], df["band_gap"], strict=True)):
        a = AseAtomsAdaptor.get_atoms(parse_cif(cif))
        a.positions = a.positions + rng.normal(0.0, 0.05, a.positions.shape)
        a.info = {"sample_id": f"s{i}", "band_gap": float(gap)}
        frames.append(a)
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "gen.extxyz"
        write(gen, frames)
        out = Path(tmp) / "metrics.json"
        cmd = [
            sys.executable, "-c", "from matgen.cli import app; app()", "evaluate", "--task",
            "gen", "--generated", str(gen), "--reference", str(data / "mp20_reduced" / "test.csv"),
            "--train", str(data / "mp20_reduced" / "train.csv"), "--property", "band_gap",
            "--out", str(out), "--workers", str(args.workers), "--no-progress",
        ]  # fmt: skip
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(proc.returncode)
        metrics = json.loads(out.read_text())
    keep = (
        "valid",
        "comp_valid",
        "struct_valid",
        "cov_recall",
        "cov_precision",
        "cov_cutoffs",
        "wdist_density",
        "wdist_num_elements",
        "wdist_property",
        "uniqueness",
        "novelty",
        "num_generated",
        "num_reference",
        "num_train",
    )
    result = {
        "benchmark": "eval_gen_smoke",
        "command": "matgen evaluate --task gen --generated gen.extxyz --reference test.csv "
        f"--train train.csv --property band_gap --workers {args.workers}",
        "generated": f"first {args.num} rows of mp20_reduced/val.csv, 0.05 Å position noise",
        "wall_time_s": round(wall, 1),
        "load_average_1min_start_end": [round(load0, 1), round(os.getloadavg()[0], 1)],
        "machine": f"{os.cpu_count()} CPU cores (shared)",
        **{k: metrics.get(k) for k in keep},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
