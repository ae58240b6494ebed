"""Configuration of the multi-field diffusion and the dataset statistics it needs."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from matgen.crystal import CrystalBatch


class DiffusionConfig(BaseModel):
    """Noise processes, loss weights and sampler defaults.

    Attributes:
        objective: ``score`` (denoising score matching, DiffCSP-style predictor-corrector
            sampling) or ``flow`` (flow matching on straight / geodesic paths, Euler ODE
            sampling; see :mod:`matgen.diffusion._flow`). With ``flow`` only
            ``lattice_sigma``, ``t_min``, the loss weights, ``cond_dropout``, ``flow_slope``
            and ``clash_scale`` apply.
        flow_slope: ``flow``: the coordinate velocity is scaled by ``1 + flow_slope * (1 - t)``
            while sampling (FlowMM's inference anti-annealing; 0 = the plain flow).
        clash_scale: ``flow``: after each Euler step, atoms closer than ``clash_scale`` times
            the sum of their covalent radii are pushed apart (:mod:`matgen.diffusion._clash`:
            without it two like atoms can merge on one spot); 0 = off. Sampling only.
        clash_floor: ``flow``: the same push for any pair closer than this many Å, whatever
            the radii (0 = none). Sampling only.
        csp_fast_steps: the fast sampler's steps for CSP when none are given (None: its
            default for every task, 50). Sampling only; a checkpoint's own measured choice
            (c14, the default until 2026-12-07: 100, ``benchmarks/ablations/csp_steps_rule.txt``;
            the shipped l32: 200, ``benchmarks/ablations/round33_rule.txt``).
        type_temperature: de novo sampling draws each revealed atom type from
            ``softmax(logits / type_temperature)``; < 1 sharpens it (fewer stray elements per
            crystal), 1 is the learned distribution. Sampling only; any objective.
        type_order: de novo sampling reveals as many masked atoms per step as the masking
            schedule draws, ``random`` ones (the reverse of the training process) or the
            ``confidence`` ones whose drawn type the prediction gives the highest probability
            (MaskGIT's order). Sampling only; any objective.
        type_remask: de novo sampling masks revealed atoms again at this rate per unit time
            (ReMDM's remasking: a type that no longer fits the others can be drawn anew; the
            share of masked atoms at each time stays the training one); 0 = never.
        sigma_min, sigma_max: geometric noise range of the torus (fractional-coordinate)
            process, ``sigma(t) = sigma_min^(1-t) sigma_max^t`` (DiffCSP: 0.005, 0.5).
        wrap_images: K, the wrapped-normal sums run over periodic images ``k in [-K, K]``.
        lattice_sigma: prior standard deviation of each lattice-matrix entry in units of the
            prior cube's edge ``(N * mean_volume_per_atom)^(1/3)``.
        lattice_cosine_s: offset of the cosine schedule of the variance-preserving lattice process.
        t_min: smallest diffusion time used in training and sampling.
        t_power: the training loss draws ``t = t_min + (1 - t_min) u^t_power`` (``u``
            uniform): 1 is uniform, > 1 puts more of the steps near the data (``t = 0``),
            where the final precision of the structure is decided.
        coord_weight, lattice_weight, type_weight: weights of the per-field losses.
        type_loss: de novo: the types' cross-entropy averaged over the batch's masked atoms
            (``atoms``: a crystal weighs as its masked atoms, about ``t`` of them) or with the
            ELBO's weighting (``elbo``: each crystal's masked atoms weighted by its atoms over
            its masked atoms, so the completion of nearly unmasked compositions counts as much
            as the first draws). Training only.
        cond_dropout: probability, per crystal and condition, that a condition is replaced by
            "unconditioned" (NaN) in the loss, for classifier-free guidance.
        self_condition: ``flow``: probability that a training step first runs the denoiser
            without gradients and gives it that estimate of the clean crystal as an input
            (self-conditioning; Chen et al. 2023). With > 0, sampling feeds each step's
            estimate to the next step at no extra cost; the denoiser must be built with
            ``self_condition: true`` (dense). 0 = off.
        coord_pairing: ``flow``: ``species`` hands each crystal's prior draws of the
            coordinates out within each element, each atom a near one (greedy nearest pairs on
            the torus, :func:`matgen.diffusion._flow.pair_within_species`): shorter, less
            crossing paths for the same prior. ``none``: each atom keeps its own draw.
            Training only (sampling starts from the same uniform draws either way); the
            val loss is then of paired paths too, not comparable with an unpaired run's.
        corrector_steps: Langevin corrector steps per predictor step in :func:`sample`.
        langevin_step: Langevin step size in units of ``sigma(t)^2`` (DiffCSP's ``step_lr`` is
            ``langevin_step * sigma_min^2``; 0.4 matches its MP-20 value 1e-5).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Literal["score", "flow"] = "score"
    flow_slope: float = Field(default=0.0, ge=0.0)
    clash_scale: float = Field(default=0.0, ge=0.0, le=1.0)
    clash_floor: float = Field(default=0.0, ge=0.0, le=2.0)
    csp_fast_steps: int | None = Field(default=None, ge=1)
    type_temperature: float = Field(default=1.0, gt=0.0)
    type_order: Literal["random", "confidence"] = "random"
    type_remask: float = Field(default=0.0, ge=0.0)
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    wrap_images: int = 5
    lattice_sigma: float = 0.2
    lattice_cosine_s: float = 0.008
    t_min: float = 1e-3
    t_power: float = Field(default=1.0, gt=0.0)
    coord_weight: float = 1.0
    lattice_weight: float = 1.0
    type_weight: float = 1.0
    type_loss: Literal["atoms", "elbo"] = "atoms"
    cond_dropout: float = 0.2
    coord_pairing: Literal["none", "species"] = "none"
    corrector_steps: int = 1
    langevin_step: float = 0.4
    self_condition: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _flow_only_options(self) -> DiffusionConfig:
        if self.self_condition > 0 and self.objective != "flow":
            raise ValueError("self_condition needs objective: flow")
        if (self.clash_scale > 0 or self.clash_floor > 0) and self.objective != "flow":
            raise ValueError("clash_scale and clash_floor need objective: flow")
        if self.coord_pairing != "none" and self.objective != "flow":
            raise ValueError("coord_pairing needs objective: flow")
        return self


class DatasetStats(BaseModel):
    """Statistics of the training data that the diffusion (and de novo sampling) needs.

    Attributes:
        mean_volume_per_atom: mean of ``volume / num_atoms`` over the training crystals, Å^3.
        num_atoms_counts: histogram ``{num_atoms: count}`` of the training crystals, used to
            draw atom counts for de novo generation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean_volume_per_atom: float
    num_atoms_counts: dict[int, int] = Field(default_factory=dict)

    @classmethod
    def from_batch(cls, batch: CrystalBatch) -> DatasetStats:
        """Compute the statistics from a (large) batch of training crystals."""
        vpa = (batch.volume / batch.num_atoms.to(batch.volume.dtype)).double().mean()
        counts: dict[int, int] = {}
        for n in batch.num_atoms.tolist():
            counts[int(n)] = counts.get(int(n), 0) + 1
        return cls(mean_volume_per_atom=float(vpa), num_atoms_counts=counts)

    def sample_num_atoms(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``num`` atom counts ``(num,)`` int64 from the training histogram."""
        if not self.num_atoms_counts:
            raise ValueError("DatasetStats has no num_atoms_counts to sample from")
        keys = sorted(self.num_atoms_counts)
        w = torch.tensor([float(self.num_atoms_counts[k]) for k in keys])
        dev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.multinomial(w.to(dev), num, replacement=True, generator=generator)
        return torch.tensor(keys, device=dev)[idx]
