"""Sampling precision: bf16 autocast wraps only the denoiser; the sampler stays float32."""

from __future__ import annotations

import torch

from matgen.generate._generate import sampling_denoiser
from matgen.models import DenoiserConfig, build_denoiser
from matgen.testing import random_crystals


def test_bf16_wrapper_returns_float32_close_to_fp32_and_auto_is_fp32_on_cpu():
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(arch="dense", hidden=32, layers=2, num_freqs=4)).eval()
    batch = random_crystals([3, 5], torch.Generator().manual_seed(0), dtype=torch.float32)
    t = torch.tensor([0.3, 0.8])
    assert sampling_denoiser(model, "auto", torch.device("cpu")) is model
    assert sampling_denoiser(model, "fp32", torch.device("cuda")) is model
    wrapped = sampling_denoiser(model, "bf16", torch.device("cpu"))
    assert next(wrapped.parameters()).dtype == torch.float32  # samplers read the state dtype here
    with torch.no_grad():
        ref, low = model(batch, t), wrapped(batch, t)
    for name in ("coord", "lattice", "type_logits"):
        a, b = getattr(ref, name), getattr(low, name)
        assert b.dtype == torch.float32
        assert not torch.equal(a, b)  # bf16 really ran
        assert torch.allclose(a, b, atol=0.05 * float(a.abs().max()) + 1e-3)
