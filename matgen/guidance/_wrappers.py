"""Wrappers that take a denoiser and return a denoiser."""

from __future__ import annotations

import torch
from torch import nn

from matgen.crystal import CrystalBatch
from matgen.diffusion import Denoiser, call_denoiser, guided_call
from matgen.nn import CleanEstimate, DenoiserOutput


class GuidedDenoiser(nn.Module):
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)``.

    Runs the wrapped denoiser on the conditional and the unconditional (every condition NaN)
    inputs in one doubled batch and combines the outputs with
    :func:`matgen.diffusion.combine_guidance`. Without conditions (or with
    ``scale == 1``) it is the wrapped denoiser.

    Args:
        denoiser: the conditional denoiser (trained with condition dropout).
        scale: guidance scale G (MatterGen uses 2).
    """

    def __init__(self, denoiser: Denoiser, scale: float) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.scale = float(scale)

    def forward(
        self, batch: CrystalBatch, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None,
        prev: CleanEstimate | None = None,
    ) -> DenoiserOutput:
        return guided_call(self.denoiser, batch, t, cond, self.scale, prev)


class TypeMaskedDenoiser(nn.Module):
    """Hard constraint on atom types: disallowed classes get logit -inf.

    Args:
        denoiser: any denoiser.
        type_mask: ``(K,)`` bool, allowed element classes (class k is Z = k + 1).
    """

    def __init__(self, denoiser: Denoiser, type_mask: torch.Tensor) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.register_buffer("type_mask", type_mask.bool())

    def forward(
        self, batch: CrystalBatch, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None,
        prev: CleanEstimate | None = None,
    ) -> DenoiserOutput:
        out = call_denoiser(self.denoiser, batch, t, cond, prev)
        logits = out.type_logits.masked_fill(~self.type_mask, float("-inf"))
        return DenoiserOutput(coord=out.coord, lattice=out.lattice, type_logits=logits)


def classifier_free_guidance(denoiser: Denoiser, scale: float) -> GuidedDenoiser:
    """Return ``denoiser`` wrapped with classifier-free guidance of scale ``scale``."""
    return GuidedDenoiser(denoiser, scale)
