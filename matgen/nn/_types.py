"""Small shared types: the denoiser output and condition specifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, model_validator


@dataclass
class DenoiserOutput:
    """What a crystal denoiser returns for a noisy batch of B crystals with N atoms.

    Fields:
        coord: ``(N, 3)`` normalised fractional-space score of the coordinates: the score
            ``d log p / d frac`` divided by ``sqrt(E|score|^2)`` of the torus kernel at this
            noise level (unit variance target, as in DiffCSP).
        lattice: ``(B, 3, 3)`` predicted lattice noise epsilon (rows, unitless; see
            :class:`matgen.diffusion.LatticeProcess`). Rotation-equivariant: rows rotate with
            the Cartesian frame; under a change of basis ``L' = M L`` it becomes ``M @ lattice``.
        type_logits: ``(N, K)`` logits over element classes, class ``k`` is ``Z = k + 1``.
    """

    coord: torch.Tensor
    lattice: torch.Tensor
    type_logits: torch.Tensor


@dataclass
class CleanEstimate:
    """A denoiser's estimate of the clean crystals, given back to it at the next evaluation
    (self-conditioning, Chen et al. 2023 "Analog Bits"; see ``DiffusionConfig.self_condition``).

    Fields:
        frac_coords: ``(N, 3)`` estimated clean fractional coordinates (need not be wrapped).
        lattice: ``(B, 3, 3)`` estimated clean lattices (rows).
        weight: ``(B,)`` 1 where a crystal has an estimate, 0 where it has none (the term is
            switched off for that crystal: the same as no estimate at all).
    """

    frac_coords: torch.Tensor
    lattice: torch.Tensor
    weight: torch.Tensor

    def repeat(self, times: int) -> CleanEstimate:
        """The estimate for a batch repeated ``times`` times (classifier-free guidance)."""
        return CleanEstimate(self.frac_coords.repeat(times, 1), self.lattice.repeat(times, 1, 1),
                             self.weight.repeat(times))


class ConditionSpec(BaseModel):
    """One conditioning property (a column of the training data).

    Attributes:
        name: property name (key of ``CrystalBatch.properties`` and of ``cond``).
        kind: ``"scalar"`` (a real value, normalised with ``mean``/``std``) or ``"categorical"``
            (an integer class in ``[0, num_classes)``, e.g. a space-group number with
            ``num_classes=231``).
        mean, std: normalisation of a scalar condition.
        num_classes: number of classes of a categorical condition.

    A NaN value (or a dropped condition) means "unconditioned" and maps to a learned null
    embedding, which is what classifier-free guidance needs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["scalar", "categorical"] = "scalar"
    mean: float = 0.0
    std: float = 1.0
    num_classes: int = 0

    @model_validator(mode="after")
    def _check(self) -> ConditionSpec:
        if self.kind == "categorical" and self.num_classes < 1:
            raise ValueError(f"categorical condition {self.name!r} needs num_classes >= 1")
        if self.kind == "scalar" and not self.std > 0:
            raise ValueError(f"scalar condition {self.name!r} needs std > 0")
        return self
