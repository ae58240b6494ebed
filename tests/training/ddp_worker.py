"""One rank of the DDP test (launched by ``torchrun`` from test_ddp.py).

Usage: ddp_worker.py RUN_DIR LOSSES_JSON [--resume]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _standin import TinyDenoiser, TinyDiffusion, tiny_crystals

from matgen.training import TrainConfig, train

CFG = {
    "batch_size": 8, "max_steps": 6, "checkpoint_every": 3, "keep_checkpoints": None,
    "log_every": 1, "optim": {"lr": 2e-2, "warmup_steps": 2}, "ema_decay": 0.9, "seed": 5,
    "conditions": {"properties": ["band_gap"], "drop_prob": 0.0},
}


def run(run_dir: str, resume: bool = False):
    torch.manual_seed(0)
    model = TinyDenoiser(conditions=("band_gap",))
    return train(TrainConfig.model_validate(CFG), data=tiny_crystals(24), out=run_dir,
                 resume=resume, denoiser=model, diffusion=TinyDiffusion(noisy=False),
                 device="cpu", progress=False, log=None)


if __name__ == "__main__":
    torch.set_num_threads(1)
    res = run(sys.argv[1], resume="--resume" in sys.argv)
    out = {"rank": int(os.environ.get("RANK", "0")), "world": int(os.environ.get("WORLD_SIZE", "1")),
           "losses": res.losses, "step": res.step}
    Path(f"{sys.argv[2]}.rank{out['rank']}").write_text(json.dumps(out))
