"""What the flow's coordinate pairing (``diffusion.coord_pairing: species``) costs per training
batch, and how much it shortens the paths, on real MP-20 training crystals.

Times :meth:`CrystalDiffusion.noise` (the whole noising of a CSP batch: coordinates, lattice)
with independent draws and with the pairing, on the first ``--rows`` crystals of mp20_reduced
train in batches of ``--batch``, on the given device (CUDA timings synchronise around each call),
and reports the mean squared torus length of the paths both ways.

    python benchmarks/pairing_cost.py --device cuda --out pairing_cost_h100.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from matgen.data import load_dataset
    from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion
    from matgen.diffusion._flow import signed_wrap

    ds = load_dataset("mp20", "train", max_atoms=20, reduce="niggli")
    rows = list(range(min(a.rows, len(ds))))
    batches = [ds.batch(rows[i:i + a.batch]).to(a.device)
               for i in range(0, len(rows), a.batch)]
    stats = DatasetStats.from_batch(batches[0])
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    out = {"what": __doc__.split("\n\n")[0], "device": a.device, "batch": a.batch,
           "rows": len(rows), "repeats": a.repeats, "torch": torch.__version__,
           "host": platform.processor() or platform.machine()}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    for pairing in ("none", "species"):
        diff = build_diffusion(DiffusionConfig(objective="flow", coord_pairing=pairing), stats)
        g = torch.Generator(device=dev).manual_seed(0)
        t1 = torch.ones(a.batch, device=dev, dtype=batches[0].lattice.dtype)
        length = []
        for b in batches:  # paths at t = 1: the noisy coordinates are the prior draws
            noisy, _, _, _ = diff.noise(b, t1[:b.num_crystals], "csp", g)
            length.append(signed_wrap(noisy.frac_coords - b.frac_coords).square().sum(-1))
        for b in batches[:2]:  # warm-up
            diff.noise(b, torch.rand(b.num_crystals, device=dev), "csp", g)
        sync()
        t0 = time.perf_counter()
        for k in range(a.repeats):
            b = batches[k % len(batches)]
            diff.noise(b, torch.rand(b.num_crystals, device=dev), "csp", g)
        sync()
        out[pairing] = {"ms_per_batch": round(1000 * (time.perf_counter() - t0) / a.repeats, 3),
                        "mean_sq_path": round(float(torch.cat(length).mean()), 4)}
        print(pairing, out[pairing], flush=True)
    out["extra_ms_per_batch"] = round(out["species"]["ms_per_batch"]
                                      - out["none"]["ms_per_batch"], 3)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
