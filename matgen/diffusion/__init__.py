"""matgen.diffusion: noise processes (one per field), the crystal diffusion loss, samplers.

Public API:
    DiffusionConfig, DatasetStats, build_diffusion, CrystalDiffusion: the multi-field process
        and its training loss ``CrystalDiffusion.loss(denoiser, batch, cond, task)``.
    TorusProcess, LatticeProcess, MaskedTypeProcess: the per-field processes.
    sample: predictor-corrector sampler (CSP or de novo); sample_fast: few-step ODE/DDIM sampler.
    SAMPLER_FAILED: the result property marking crystals whose sampling failed numerically.
    combine_guidance, guided_call, unconditional: classifier-free guidance helpers.
    call_denoiser: a denoiser call that passes a self-conditioning estimate only when there is one.
    ConsistencyDistillation, sample_consistency, consistency_readout, consistency_times:
        few-step sampling from a consistency-distilled denoiser and the distillation loss.
"""

from __future__ import annotations

from matgen.diffusion._config import DatasetStats, DiffusionConfig
from matgen.diffusion._consistency import (
    ConsistencyDistillation,
    consistency_readout,
    consistency_times,
    sample_consistency,
)
from matgen.diffusion._crystal import CrystalDiffusion, Denoiser, build_diffusion, call_denoiser
from matgen.diffusion._processes import LatticeProcess, MaskedTypeProcess, TorusProcess, wrap01
from matgen.diffusion._sampling import FAILED as SAMPLER_FAILED
from matgen.diffusion._sampling import (
    combine_guidance,
    guided_call,
    sample,
    sample_fast,
    unconditional,
)

__all__ = [
    "SAMPLER_FAILED",
    "ConsistencyDistillation",
    "CrystalDiffusion",
    "DatasetStats",
    "Denoiser",
    "DiffusionConfig",
    "LatticeProcess",
    "MaskedTypeProcess",
    "TorusProcess",
    "build_diffusion",
    "call_denoiser",
    "combine_guidance",
    "consistency_readout",
    "consistency_times",
    "guided_call",
    "sample",
    "sample_consistency",
    "sample_fast",
    "unconditional",
    "wrap01",
]
