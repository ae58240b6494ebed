"""CSP self-check: `matgen evaluate --task csp` on MP-20 (reduced) test vs a perturbed copy of it.

Every reference of ``mp20_reduced/test.csv`` is perturbed slightly (Gaussian noise on the
Cartesian positions and a small random strain of the lattice), written as one extxyz frame
carrying its ``material_id``, and evaluated with the CLI. A correct implementation matches
(nearly) every reference whose composition is valid; the RMSE reflects the noise.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/eval_csp_selfcheck.py [--workers 2] [--limit N]

Writes ``benchmarks/results/eval_csp_selfcheck.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def perturbed_frames(
    csv: Path, pos_sigma: float, strain_sigma: float, seed: int, limit: int | None
):
    """ASE frames: each reference with noisy positions (Å) and a strained lattice."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from matgen.evaluation import read_reference_csv
    from matgen.evaluation._io import parse_cif

    ref = read_reference_csv(csv)
    rng = np.random.default_rng(seed)
    frames = []
    n = len(ref) if limit is None else min(limit, len(ref))
    for mid, cif in zip(ref.ids[:n], ref.cifs[:n], strict=True):
        s = parse_cif(cif)
        a = AseAtomsAdaptor.get_atoms(s)
        strain = np.eye(3) + rng.normal(0.0, strain_sigma, (3, 3))
        a.set_cell(np.asarray(a.cell[:]) @ strain, scale_atoms=True)
        a.positions = a.positions + rng.normal(0.0, pos_sigma, a.positions.shape)
        a.info = {"material_id": mid}
        frames.append(a)
    return frames, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("MATGEN_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--reference", type=Path, default=data / "mp20_reduced" / "test.csv")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pos-sigma", type=float, default=0.05, help="Å")
    ap.add_argument("--strain-sigma", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N references only")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_csp_selfcheck.json"
    )
    args = ap.parse_args()

    from ase.io import write

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames, n = perturbed_frames(
            args.reference, args.pos_sigma, args.strain_sigma, args.seed, args.limit
        )
        gen = tmp / "perturbed.extxyz"
        write(gen, frames)
        ref = args.reference
        if args.limit is not None:
            import pandas as pd

            ref = tmp / "reference.csv"
            pd.read_csv(args.reference).iloc[:n].to_csv(ref, index=False)
        metrics_path = tmp / "metrics.json"
        cmd = [
            sys.executable,
            "-c",
            "from matgen.cli import app; app()",
            "evaluate",
            "--task",
            "csp",
            "--generated",
            str(gen),
            "--reference",
            str(ref),
            "--out",
            str(metrics_path),
            "--per-structure",
            str(tmp / "per_structure.csv"),
            "--workers",
            str(args.workers),
        ]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(proc.returncode)
        metrics = json.loads(metrics_path.read_text())

    result = {
        "benchmark": "eval_csp_selfcheck",
        "command": " ".join(
            [
                "matgen evaluate --task csp --generated perturbed.extxyz",
                f"--reference {args.reference.name}",
                f"--workers {args.workers}",
            ]
        ),
        "reference": str(args.reference),
        "num_pairs": n,
        "perturbation": {
            "position_sigma_angstrom": args.pos_sigma,
            "lattice_strain_sigma": args.strain_sigma,
            "seed": args.seed,
        },
        "wall_time_s": round(wall, 1),
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        "load_average_1min_start_end": [round(load0, 1), round(load1, 1)],
        "match_rate": metrics["match_rate"],
        "rmse": metrics["rmse"],
        "convention": metrics["convention"],
        "match_rate_pred_validity_only": metrics["match_rate_pred_validity_only"],
        "rmse_pred_validity_only": metrics["rmse_pred_validity_only"],
        "num_references_invalid": metrics["num_references_invalid"],
        "max_match_rate_given_invalid_references": metrics[
            "max_match_rate_given_invalid_references"
        ],
        "match_rate_over_valid_references": metrics["match_rate_over_valid_references"],
        "generated_validity": metrics["generated_validity"],
        "generated_invalid_reasons": metrics["generated_invalid_reasons"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
