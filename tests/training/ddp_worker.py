"""One rank of the DDP test (launched by ``torchrun`` from test_ddp.py).

Trains 6 steps (checkpoints at 3 and 6) in RUN_DIR/full, then copies that run without its
step-6 checkpoint (a run killed after step 3) to RUN_DIR/killed and resumes it. The process
group is created here, so both ``train`` calls share it.

Usage: ddp_worker.py RUN_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals

from matgen.training import TrainConfig, train

CFG = {
    "batch_size": 8, "max_steps": 6, "checkpoint_every": 3, "keep_checkpoints": None,
    "log_every": 1, "optim": {"lr": 2e-2, "warmup_steps": 2}, "ema_decay": 0.9, "seed": 5,
    "conditions": {"properties": ["band_gap"], "drop_prob": 0.0},
    "task": "both",  # CSP steps leave the stand-in's type head unused: DDP must cope
    "ddp_find_unused_parameters": True,
    # DDP_BUCKET_VIEW=1 (test_ddp.py's second case): gradients as views into DDP's buckets
    "ddp_bucket_view": os.environ.get("DDP_BUCKET_VIEW") == "1",
}


def run(run_dir: str | Path, resume: bool = False):
    torch.manual_seed(0)
    model = TinyDenoiser(conditions=("band_gap",))
    return train(TrainConfig.model_validate(CFG), data=tiny_crystals(24), out=run_dir,
                 resume=resume, denoiser=model, diffusion=TinyDiffusion(noisy=False),
                 device="cpu", progress=False, log=None)


if __name__ == "__main__":
    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    full = run(root / "full")
    if rank == 0:
        shutil.copytree(root / "full", root / "killed")
        shutil.rmtree(root / "killed" / "checkpoints" / "step_6")
        shutil.rmtree(root / "killed" / "checkpoints" / "last")
    dist.barrier()
    resumed = run(root / "killed", resume=True)
    out = {"rank": rank, "world": world, "losses": full.losses, "resumed": resumed.losses,
           "env_world": int(os.environ["WORLD_SIZE"]), "bucket_view": CFG["ddp_bucket_view"]}
    (root / f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()
