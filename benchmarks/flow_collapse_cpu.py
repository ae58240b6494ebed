"""Where the flow sampler's structurally invalid crystals come from (atoms on one spot).

Samples CSP structures for the compositions of a CSV with the shipped default model (or
``--checkpoint``) on the CPU, with the fast flow sampler and one of several variants of its
coordinate step, counts crystals with two sites closer than 0.5 Å and writes the frames (with
``material_id``) for ``matgen evaluate --task csp``. Results: ``benchmarks/results/flow_collapse_cpu.json``.

Variants (``--variant``):
  ``default``       the sampler as shipped (anti-annealing slope from the checkpoint);
  ``slope:S``       another anti-annealing slope S;
  ``pow:P``         50 steps on the time grid ``t = (1 - u)^P`` (denser near t = 0);
  ``off_below:T``   no anti-annealing once t <= T;
  ``only_below:T``  anti-annealing only while t < T;
  ``noise:E:T``     as shipped plus Gaussian noise of std ``E * sqrt(t - s)`` (fractional
                    units) after every step that ends at s > T.

Example (2-core CPU, ~5 min for 300 compositions)::

    MATGEN_DATA_DIR=../shared/datasets python benchmarks/flow_collapse_cpu.py \
        --csv val300.csv --variant noise:0.05:0.1 --out /tmp/v300_noise.extxyz
    matgen evaluate --task csp --generated /tmp/v300_noise.extxyz --reference val300.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from matgen.diffusion import _flow, sample_fast
from matgen.generate._checkpoints import load_for_sampling
from matgen.generate._generate import sampling_denoiser
from matgen.generate._requests import requests_from_csv


def patched_step(kind: str, value: float, floor: float, noise: torch.Generator):
    """A replacement for ``TorusFlow.step`` implementing one variant (see the module)."""

    def step(self, ft, velocity, t, s, slope: float = 0.0):
        fast = torch.minimum((t - s) * (1.0 + slope * (1.0 - t)), t)
        if kind == "off_below":
            length = torch.where(t > value, fast, t - s)
        elif kind == "only_below":
            length = torch.where(t < value, fast, t - s)
        else:
            length = fast
        f = ft - length.unsqueeze(-1) * self.scale * velocity
        if kind == "noise":
            std = torch.where(s > floor, value * (t - s).clamp_min(0).sqrt(), torch.zeros_like(s))
            f = f + std.unsqueeze(-1) * torch.randn(f.shape, generator=noise)
        return _flow.wrap01(f)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", required=True, help="CSV with material_id and cif columns")
    ap.add_argument("--num", type=int, default=1, help="samples per composition")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", required=True, help="extxyz to write")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    model, diffusion, meta, _ = load_for_sampling(args.checkpoint, cpu)
    reqs, _ = requests_from_csv(args.csv, args.num, None, meta, torch.Generator().manual_seed(0))
    na = torch.tensor([r.num_atoms for r in reqs])
    z = torch.tensor([a for r in reqs for a in r.atomic_numbers])
    u = torch.linspace(0, 1, args.steps + 1, dtype=torch.float64)
    kind, *vals = args.variant.split(":")
    times = ((1 - u) ** (float(vals[0]) if kind == "pow" else 1.0)).tolist()
    if kind == "slope":
        diffusion.cfg = diffusion.cfg.model_copy(update={"flow_slope": float(vals[0])})
    elif kind in ("off_below", "only_below", "noise"):
        floor = float(vals[1]) if kind == "noise" else 0.0
        diffusion.coords.step = patched_step(kind, float(vals[0]), floor,
                                             torch.Generator().manual_seed(11)).__get__(
            diffusion.coords)
    with torch.no_grad():
        res = sample_fast(sampling_denoiser(model, "auto", cpu), diffusion, na, z,
                          steps=args.steps, generator=torch.Generator().manual_seed(args.seed),
                          times=times)
    from ase.io import write
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    ptr, frames, collapsed = np.cumsum([0] + na.tolist()), [], 0
    for i, r in enumerate(reqs):
        s = Structure(Lattice(res.lattice[i].numpy()),
                      res.atomic_numbers[ptr[i]:ptr[i + 1]].tolist(),
                      res.frac_coords[ptr[i]:ptr[i + 1]].numpy())
        d = s.distance_matrix
        np.fill_diagonal(d, np.inf)
        collapsed += int(d.min() < 0.5)
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info["material_id"] = r.material_id
        frames.append(atoms)
    write(args.out, frames, format="extxyz")
    print(f"{args.variant}: {collapsed} of {len(reqs)} crystals with two sites closer than 0.5 A")


if __name__ == "__main__":
    main()
