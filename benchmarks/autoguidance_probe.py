"""`matgen sample` with autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad
version of itself"): every denoiser call becomes ``weak + w (strong - weak)``, with ``strong``
the checkpoint being sampled and ``weak`` a worse model of the same kind (an ancestor, or one
trained for less time). A probe for issue #16 (can guidance sharpen CSP structures?), not a
matgen feature: the command line is `matgen sample`'s, the weak model and weight come from
the environment.

    AG_WEAK=path/to/weak_checkpoint AG_W=1.5 python benchmarks/autoguidance_probe.py sample \\
        --task csp --compositions-from val300.csv --num 1 --sampler fast --steps 50 --out S.extxyz
"""

from __future__ import annotations

import os

import torch

import matgen.generate._generate as sampling_loop
from matgen.diffusion import call_denoiser
from matgen.diffusion._sampling import combine_guidance
from matgen.models import load_checkpoint


class AutoGuided(torch.nn.Module):
    """``weak + w (strong - weak)`` for every output field (type logits as log-probabilities)."""

    def __init__(self, strong: torch.nn.Module, weak: torch.nn.Module, w: float) -> None:
        super().__init__()
        self.strong, self.weak, self.w = strong, weak, w

    def forward(self, batch, t, cond=None, prev=None):
        return combine_guidance(call_denoiser(self.strong, batch, t, cond, prev),
                                call_denoiser(self.weak, batch, t, cond, prev), self.w)


def main() -> None:
    weak, _ = load_checkpoint(os.environ["AG_WEAK"], device="cpu")
    weak.eval()
    w = float(os.environ.get("AG_W", "1.5"))
    plain = sampling_loop.sampling_denoiser
    sampling_loop.sampling_denoiser = lambda model, precision, device: AutoGuided(
        plain(model, precision, device), plain(weak.to(device), precision, device), w)
    from matgen.cli import app

    app()


if __name__ == "__main__":
    main()
