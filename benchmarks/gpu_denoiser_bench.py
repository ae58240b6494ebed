"""H100: training steps/s (batch 256, mp20) and sampling structures/s of matgen's denoiser.

The bare step (loss + backward + clip + fused AdamW on 8 resident batches of the first 2,048
mp20_reduced train crystals, de novo task, fp32 with TF32): an upper bound of `matgen train`,
whose loop adds EMA, the schedule and data loading.

    python benchmarks/gpu_denoiser_bench.py L4-h512-v96-c5,L6-h384-v64-c6 L4-h512-v96-c5

Results of the runs on the lent H100 are in benchmarks/results/gpu_throughput_h100.json.
"""
import json
import os
import sys
import time

import torch

from matgen.data import load_dataset
from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion, sample, sample_fast
from matgen.models import DenoiserConfig, build_denoiser

dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = True
full = load_dataset("mp20", split="train").batch(list(range(2048)))
stats = DatasetStats.from_batch(full)
diff = build_diffusion(DiffusionConfig(), stats)
B = 256
batches = [full[list(range(i, i + B))].to(dev) for i in range(0, 2048, B)]
cfgs = {
    "L6-h384-v64-c6": DenoiserConfig(hidden=384, vectors=64, layers=6, cutoff=6.0),
    "L4-h512-v96-c5": DenoiserConfig(hidden=512, vectors=96, layers=4, cutoff=5.0),
    "L4-h384-v64-c5": DenoiserConfig(hidden=384, vectors=64, layers=4, cutoff=5.0),
}
res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "batch": B}
for name in sys.argv[1].split(","):
    torch.manual_seed(0)
    m = build_denoiser(cfgs[name]).to(dev)
    opt = torch.optim.AdamW(m.parameters(), 1e-4, fused=True)
    def step(m, opt, b):
        loss = diff.loss(m, b, task="gen")[0]
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    for i in range(5): step(m, opt, batches[i % 8])
    torch.cuda.synchronize(); t0 = time.perf_counter(); n = 40
    for i in range(n): step(m, opt, batches[i % 8])
    torch.cuda.synchronize(); dt = (time.perf_counter() - t0) / n
    r = {"params": m.num_parameters, "train_steps_per_s": round(1 / dt, 2),
         "train_crystals_per_s": round(B / dt)}
    print(name, r, flush=True)
    if name in sys.argv[2].split(","):
        m.eval()
        for fn, steps, bs in ((sample_fast, 50, 1024), (sample, 1000, 256)):
            na = stats.sample_num_atoms(bs, torch.Generator().manual_seed(0)).to(dev)
            g = torch.Generator(device=dev).manual_seed(0)
            torch.cuda.synchronize(); t0 = time.perf_counter()
            out = fn(m, diff, na, None, steps=steps, generator=g)
            torch.cuda.synchronize(); dt = time.perf_counter() - t0
            ok = bool(torch.isfinite(out.lattice).all())
            r[f"{fn.__name__}_{steps}steps_batch{bs}_structs_per_s"] = round(bs / dt, 1)
            print(name, fn.__name__, steps, bs, round(bs / dt, 1), "finite", ok, flush=True)
    res[name] = r
with open(os.path.join(os.environ.get("OUT", "/tmp"), "gpu_bench2.json"), "w") as fh:
    json.dump(res, fh, indent=1)
