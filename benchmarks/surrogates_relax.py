"""Batched FIRE relaxation vs ASE one-at-a-time relaxation, structures per second.

    OMP_NUM_THREADS=1 python benchmarks/surrogates_relax.py [--mlip chgnet|sevennet|sevennet-0]
        [--engine auto|tensor|structures] [--n 256] [--n-ase 32] [--fmax 0.1]
        [--batch-size 128] [--max-atoms-per-batch 2048] [--device auto] [--rattle 0.05]
        [--strain 0.03] [--out FILE.json]

Structures: MP-20 test cells (<= 20 atoms), rattled (Gaussian, ``--rattle`` Å) and strained
(random symmetric strain up to ``--strain``) so that each relaxation takes real work. The
batched relaxer (:func:`matgen.surrogates.relax`, ``--engine``: ``tensor`` keeps the whole
state and the neighbour lists on the MLIP's device, SevenNet only; ``structures`` is the
pymatgen-in-the-loop path) runs on all ``--n``; ASE FIRE + FrechetCellFilter with the MLIP's
own ASE calculator on the first ``--n-ase``. Both use ``--fmax`` and 500 steps. Records
structures/s of each, the speed-up, and the energy agreement (meV/atom) on the structures both
relaxed. Runs on CUDA when present.

The acceptance run of issue 17 (one H200, SevenNet-0, 1,000 cells, fmax 0.05; ``--mlip
sevennet`` is SevenNet-l3i5 since it became the default):

    OMP_NUM_THREADS=4 python benchmarks/surrogates_relax.py --mlip sevennet-0 --engine tensor \
        --n 1000 --n-ase 24 --fmax 0.05 --batch-size 1000 --max-atoms-per-batch 20000 \
        --out benchmarks/results/surrogates_relax_sevennet_h200.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from matgen.surrogates import RelaxConfig, load_mlip, relax, relax_ase
from matgen.surrogates._mlip import MLIP_NAMES

REPO = Path(__file__).resolve().parents[1]


def perturbed(n: int, seed: int, rattle: float, strain: float, data_dir: Path,
              max_atoms: int | None = None):
    """``n`` MP-20 test structures (of at most ``max_atoms`` atoms), rattled and strained
    reproducibly."""
    from pymatgen.core import Lattice, Structure

    df = pd.read_csv(data_dir / "mp20_reduced" / "test.csv")
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if max_atoms is not None:
        rows = []
        for k, cif in enumerate(df["cif"]):
            if len(rows) == n:
                break
            if Structure.from_str(cif, fmt="cif").num_sites <= max_atoms:
                rows.append(k)
        df = df.iloc[rows].reset_index(drop=True)
    df = df.iloc[:n].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    out = []
    for cif in df["cif"]:
        s = Structure.from_str(cif, fmt="cif")
        eps = rng.uniform(-strain, strain, (3, 3))
        eps = 0.5 * (eps + eps.T)
        lat = s.lattice.matrix @ (np.eye(3) + eps)
        cart = s.frac_coords @ lat + rng.normal(0, rattle, (len(s), 3))
        out.append(Structure(Lattice(lat), s.species, cart, coords_are_cartesian=True))
    return out, list(df["material_id"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-ase", type=int, default=32)
    ap.add_argument("--mlip", default="chgnet", choices=list(MLIP_NAMES),
                    help="sevennet: SevenNet-l3i5, sevennet-0: SevenNet-0, chgnet")
    ap.add_argument("--model", default=None,
                    help="another SevenNet checkpoint (default: the --mlip name's)")
    ap.add_argument("--engine", default="auto", choices=["auto", "tensor", "structures"])
    ap.add_argument("--fmax", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--max-atoms-per-batch", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rattle", type=float, default=0.05)
    ap.add_argument("--strain", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("MATGEN_DATA_DIR",
                                                         REPO.parent / "shared" / "datasets"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    structs, ids = perturbed(args.n, args.seed, args.rattle, args.strain, Path(args.data_dir))
    kwargs = {"model": args.model} if args.model else {}
    mlip = load_mlip(args.mlip, device=args.device, **kwargs)
    cfg = RelaxConfig(fmax=args.fmax, max_steps=args.max_steps, batch_size=args.batch_size,
                      max_atoms_per_batch=args.max_atoms_per_batch, engine=args.engine)
    # warm-up (CUDA context, kernels)
    relax(structs[:8], mlip, dataclasses.replace(cfg, max_steps=3))
    if mlip.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res_b = relax(structs, mlip, cfg, ids=ids)
    if mlip.device.type == "cuda":
        torch.cuda.synchronize()
    t_b = time.perf_counter() - t0
    n_ase = min(args.n_ase, len(structs))
    t0 = time.perf_counter()
    res_a = relax_ase(structs[:n_ase], mlip, cfg, ids=ids[:n_ase])
    t_a = time.perf_counter() - t0
    ase_steps = sum(r.steps for r in res_a)
    de = np.array([1000 * (a.energy_per_atom - b.energy_per_atom)
                   for a, b in zip(res_a, res_b[:n_ase], strict=True)])
    both = np.isfinite(de)
    rate_b = len(structs) / t_b
    rate_a = n_ase / t_a if n_ase else None  # --n-ase 0: no ASE baseline
    out = {
        "device": str(mlip.device),
        "machine": f"{platform.machine()}, torch threads {torch.get_num_threads()}"
                   + (f", {torch.cuda.get_device_name()}" if mlip.device.type == "cuda" else ""),
        "mlip": f"{mlip.name} {mlip.version}",
        "engine": args.engine,
        "fmax": cfg.fmax,
        "max_steps": cfg.max_steps,
        "n_batched": len(structs),
        "mean_atoms": float(np.mean([len(s) for s in structs])),
        "n_ase": n_ase,
        "batch_size": cfg.batch_size,
        "max_atoms_per_batch": cfg.max_atoms_per_batch,
        "load_average_at_end": os.getloadavg()[0],
        "perturbation": {"rattle_A": args.rattle, "strain": args.strain},
        "batched_structures_per_s": rate_b,
        "ase_structures_per_s": rate_a,
        "speedup": rate_b / rate_a if rate_a else None,
        "batched_seconds": t_b,
        "ase_seconds": t_a,
        "batched_converged": int(sum(r.converged for r in res_b)),
        "batched_failed": int(sum(r.error is not None for r in res_b)),
        "batched_mean_steps": float(np.mean([r.steps for r in res_b])),
        "ase_converged": int(sum(r.converged for r in res_a)),
        "ase_mean_steps": float(np.mean([r.steps for r in res_a])) if res_a else None,
        "ase_ms_per_step": 1000 * t_a / max(ase_steps, 1),
        "batched_structure_steps_per_s": sum(r.steps for r in res_b) / t_b,
        "energy_diff_meV_per_atom": {
            "mae": float(np.abs(de[both]).mean()) if both.any() else None,
            "max": float(np.abs(de[both]).max()) if both.any() else None,
            "within_5meV": int((np.abs(de[both]) < 5).sum()),
            "compared": int(both.sum()),
        },
    }
    print(json.dumps(out, indent=1))
    path = Path(args.out or REPO / "benchmarks" / "results" /
                (f"surrogates_relax_{mlip.device.type}.json" if args.mlip == "chgnet"
                 else f"surrogates_relax_{args.mlip}_{mlip.device.type}.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
