"""Throughput measurements of a denoiser (for benchmarks/ scripts; device-agnostic)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion import CrystalDiffusion, sample, sample_fast


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_throughput(
    model: torch.nn.Module,
    diffusion: CrystalDiffusion,
    batches: Sequence[CrystalBatch],
    steps: int = 40,
    warmup: int = 5,
    task: str = "gen",
    lr: float = 1e-4,
) -> dict[str, float]:
    """Optimizer steps per second (loss, backward, clip, AdamW) cycling through ``batches``.

    Args:
        model: the denoiser, already on its device (its weights are updated).
        diffusion: the diffusion whose loss is used.
        batches: batches on the model's device.
        steps, warmup: timed and untimed steps.
        task: ``"gen"`` or ``"csp"``.
        lr: AdamW learning rate.

    Returns:
        ``{"steps_per_s", "crystals_per_s", "params"}``.
    """
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr)
    model.train()

    def step(b: CrystalBatch) -> None:
        loss, _ = diffusion.loss(model, b, task=task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(warmup):
        step(batches[i % len(batches)])
    _sync(device)
    t0 = time.perf_counter()
    crystals = 0
    for i in range(steps):
        b = batches[i % len(batches)]
        step(b)
        crystals += b.num_crystals
    _sync(device)
    dt = time.perf_counter() - t0
    return {
        "steps_per_s": steps / dt,
        "crystals_per_s": crystals / dt,
        "params": float(sum(p.numel() for p in model.parameters())),
    }


def sampling_throughput(
    model: torch.nn.Module,
    diffusion: CrystalDiffusion,
    num_atoms: torch.Tensor,
    steps: int,
    fast: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Structures per second of de novo sampling of ``len(num_atoms)`` crystals in one batch.

    Args:
        model: the denoiser on its device.
        diffusion: its diffusion.
        num_atoms: ``(B,)`` atom counts.
        steps: sampler steps.
        fast: :func:`~matgen.diffusion.sample_fast` instead of the predictor-corrector.
        seed: generator seed.

    Returns:
        ``{"structures_per_s", "seconds", "finite"}`` (``finite``: 1.0 if every lattice is finite).
    """
    device = next(model.parameters()).device
    model.eval()
    fn = sample_fast if fast else sample
    g = torch.Generator(device=device).manual_seed(seed)
    _sync(device)
    t0 = time.perf_counter()
    out = fn(model, diffusion, num_atoms.to(device), None, steps=steps, generator=g)
    _sync(device)
    dt = time.perf_counter() - t0
    return {
        "structures_per_s": len(num_atoms) / dt,
        "seconds": dt,
        "finite": float(bool(torch.isfinite(out.lattice).all())),
    }
