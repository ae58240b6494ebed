"""CPU cost of the dense denoiser's optional pair inputs (``model.distance_rbf``,
``model.edge_update``) at the shipped size (hidden 512, 6 blocks, 32 frequencies): seconds per
no-grad forward of one batch of 64 random crystals of 2-20 atoms, 1 thread, mean of 3 after a
warm-up. A random network (the cost does not depend on the weights).

    OMP_NUM_THREADS=1 python benchmarks/dense_pair_options_cpu.py \\
        --out benchmarks/results/dense_pair_options_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from matgen.models import DenoiserConfig, build_denoiser
from matgen.testing import random_crystals

OPTIONS = {"plain": {}, "distance_rbf 32": {"distance_rbf": 32}, "edge_update": {"edge_update": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = DenoiserConfig(arch="dense", hidden=512, layers=6, num_freqs=32)
    g = torch.Generator().manual_seed(0)
    batch = random_crystals(torch.randint(2, 21, (64,), generator=g).tolist(), g,
                            dtype=torch.float32)
    t = torch.rand(64, generator=g)
    rows = {}
    for name, update in OPTIONS.items():
        torch.manual_seed(0)
        model = build_denoiser(base.model_copy(update=update)).eval()
        with torch.no_grad():
            model(batch, t)
            start = time.perf_counter()
            for _ in range(args.repeats):
                model(batch, t)
        rows[name] = {"s_per_forward": round((time.perf_counter() - start) / args.repeats, 3),
                      "parameters": model.num_parameters}
    out = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "machine": platform.processor()
           or platform.machine(), "threads": 1, "torch": torch.__version__, "results": rows}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
