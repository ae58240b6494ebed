"""Throughput helpers run and report sane numbers on a tiny CPU model."""

from __future__ import annotations

import torch

from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion
from matgen.models import DenoiserConfig, build_denoiser
from matgen.testing import random_crystals, sampling_throughput, training_throughput


def test_throughput_helpers():
    torch.manual_seed(0)
    model = build_denoiser(
        DenoiserConfig(hidden=16, vectors=4, layers=1, num_radial=8, angular_channels=4, cutoff=4.0)
    )
    batch = random_crystals([2, 3, 4], torch.Generator().manual_seed(0), dtype=torch.float32)
    diff = build_diffusion(DiffusionConfig(), DatasetStats.from_batch(batch))
    before = [p.detach().clone() for p in model.parameters()]
    tr = training_throughput(model, diff, [batch], steps=3, warmup=1)
    assert tr["steps_per_s"] > 0 and abs(tr["crystals_per_s"] / tr["steps_per_s"] - 3) < 1e-6
    assert tr["params"] == sum(p.numel() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    sa = sampling_throughput(model, diff, torch.tensor([2, 5]), steps=3, fast=True)
    assert sa["finite"] == 1.0 and sa["structures_per_s"] > 0
