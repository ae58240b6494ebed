"""The multi-field crystal diffusion: one noise process per field and the training loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion._config import DatasetStats, DiffusionConfig
from matgen.diffusion._flow import LatticeFlow, TorusFlow
from matgen.diffusion._processes import (
    CoordinatePath,
    LatticePath,
    LatticeProcess,
    MaskedTypeProcess,
    TorusProcess,
)
from matgen.nn import CleanEstimate, DenoiserOutput, scatter_mean

#: A denoiser: ``(noisy batch, t (B,), cond {name: (B,)} | None) -> DenoiserOutput``; one
#: built with self-conditioning also takes ``prev=CleanEstimate`` (a keyword, given only then).
Denoiser = Callable[[CrystalBatch, torch.Tensor, "dict[str, torch.Tensor] | None"], DenoiserOutput]


def call_denoiser(denoiser: Denoiser, batch: CrystalBatch, t: torch.Tensor,
                  cond: dict[str, torch.Tensor] | None,
                  prev: CleanEstimate | None = None) -> DenoiserOutput:
    """``denoiser(batch, t, cond)``, with ``prev=`` only when there is an estimate (so every
    denoiser without self-conditioning keeps its three-argument call)."""
    if prev is None:
        return denoiser(batch, t, cond)
    return denoiser(batch, t, cond, prev=prev)  # type: ignore[call-arg]


class CrystalDiffusion:
    """Fractional coordinates (torus), lattice (VP to a cube) and atom types (absorbing).

    With ``cfg.objective == "flow"`` the coordinates and the lattice follow the flow-matching
    paths of :mod:`matgen.diffusion._flow` instead (types are the same), and the loss regresses
    their velocities.

    Args:
        cfg: the configuration.
        stats: dataset statistics (mean volume per atom, atom-count histogram).
    """

    def __init__(self, cfg: DiffusionConfig, stats: DatasetStats) -> None:
        self.cfg, self.stats = cfg, stats
        self.coords: CoordinatePath  # TorusProcess or TorusFlow
        self.lattice: LatticePath  # LatticeProcess or LatticeFlow
        if cfg.objective == "flow":
            self.coords = TorusFlow()
            self.lattice = LatticeFlow(stats.mean_volume_per_atom, cfg.lattice_sigma)
        else:
            self.coords = TorusProcess(cfg.sigma_min, cfg.sigma_max, cfg.wrap_images)
            self.lattice = LatticeProcess(
                stats.mean_volume_per_atom, cfg.lattice_sigma, cfg.lattice_cosine_s
            )
        self.types = MaskedTypeProcess()

    @property
    def is_flow(self) -> bool:
        """True for the flow-matching objective."""
        return self.cfg.objective == "flow"

    @property
    def self_conditioned(self) -> bool:
        """True when the denoiser takes its previous clean estimate (``cfg.self_condition``)."""
        return self.cfg.self_condition > 0

    def clean_estimate(self, noisy: CrystalBatch, out: DenoiserOutput, t: torch.Tensor,
                       bidx: torch.Tensor) -> CleanEstimate:
        """The clean crystals that the denoiser's ``out`` at times ``t (B,)`` predicts (flow:
        each field's path end point), detached, weight 1; ``bidx`` the atoms' crystal index."""
        if not self.is_flow:
            raise ValueError("clean estimates (self-conditioning) need objective: flow")
        b = noisy.num_crystals
        v = out.coord - scatter_mean(out.coord, bidx, b)[bidx]
        f0 = self.coords.clean(noisy.frac_coords, v, t[bidx])  # type: ignore[attr-defined]
        l0 = self.lattice.clean(noisy.lattice, out.lattice, t,  # type: ignore[attr-defined]
                                noisy.num_atoms)
        return CleanEstimate(f0.detach(), l0.detach(), torch.ones_like(t))

    def self_condition_input(self, denoiser: Denoiser, noisy: CrystalBatch, t: torch.Tensor,
                             cond: dict[str, torch.Tensor] | None,
                             generator: torch.Generator | None = None) -> CleanEstimate:
        """Training: with probability ``cfg.self_condition`` (one draw per batch, on the host's
        RNG so no device sync) the denoiser's own estimate from a pass without gradients,
        otherwise an empty estimate (weight 0), which still runs the self-conditioning
        branch so every parameter is in the graph (DDP)."""
        cpu_gen = generator if generator is not None and generator.device.type == "cpu" else None
        empty = CleanEstimate(noisy.frac_coords, noisy.lattice, torch.zeros_like(t))
        if float(torch.rand((), generator=cpu_gen)) >= self.cfg.self_condition:
            return empty
        bidx = torch.repeat_interleave(
            torch.arange(noisy.num_crystals, device=t.device), noisy.num_atoms,
            output_size=noisy.frac_coords.shape[0],
        )
        with torch.no_grad():
            first = denoiser(noisy, t, cond, prev=empty)  # type: ignore[call-arg]
        return self.clean_estimate(noisy, first, t, bidx)

    def drop_conditions(
        self, cond: dict[str, torch.Tensor] | None, p: float, generator=None
    ) -> dict[str, torch.Tensor] | None:
        """Replace each condition value by NaN with probability ``p`` (per crystal and key)."""
        if not cond or p <= 0:
            return cond
        out = {}
        for k, v in cond.items():
            gdev = generator.device if generator is not None else v.device
            u = torch.rand(v.shape, generator=generator, device=gdev).to(v.device)
            out[k] = torch.where(u < p, torch.full_like(v, float("nan")), v.to(torch.float32))
        return out

    def noise(
        self,
        batch: CrystalBatch,
        t: torch.Tensor,
        task: Literal["csp", "gen"],
        generator: torch.Generator | None = None,
    ) -> tuple[CrystalBatch, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Noise the clean ``batch`` to per-crystal times ``t (B,)`` (types only for ``gen``).

        Returns:
            ``(noisy batch, coordinate target, lattice target, masked)``; ``masked`` (N,) bool
            marks the masked types (``None`` in CSP, where types stay fixed).
        """
        bidx = torch.repeat_interleave(
            torch.arange(batch.num_crystals, device=t.device), batch.num_atoms,
            output_size=batch.frac_coords.shape[0],
        )
        ta = t[bidx]
        if self.is_flow and self.cfg.coord_pairing == "species":
            pairing = (batch.atomic_numbers, bidx, batch.num_atoms)
            ft, coord_target = self.coords.add_noise(batch.frac_coords, ta, generator, pairing)
        else:
            ft, coord_target = self.coords.add_noise(batch.frac_coords, ta, generator)
        if self.is_flow:  # a common shift of all atoms is no change: centre per crystal
            coord_target = coord_target - scatter_mean(coord_target, bidx, batch.num_crystals)[bidx]
        lt, lat_target = self.lattice.add_noise(batch.lattice, t, batch.num_atoms, generator)
        if task == "gen":
            zt, masked = self.types.add_noise(batch.atomic_numbers, ta, generator)
        else:
            zt, masked = batch.atomic_numbers, None
        noisy = CrystalBatch(atomic_numbers=zt, frac_coords=ft, lattice=lt,
                             num_atoms=batch.num_atoms, ids=list(batch.ids))
        return noisy, coord_target, lat_target, masked

    def loss(
        self,
        denoiser: Denoiser,
        batch: CrystalBatch,
        cond: dict[str, torch.Tensor] | None = None,
        task: Literal["csp", "gen"] = "csp",
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising loss of one batch.

        Samples ``t = t_min + (1 - t_min) u^t_power`` (``u ~ U[0, 1]``) per crystal, noises coordinates and lattice (and types
        when ``task == "gen"``; in CSP types stay fixed), runs the denoiser and returns the
        weighted sum of the per-field losses. Conditions are dropped with probability
        ``cfg.cond_dropout`` for classifier-free guidance. With ``cfg.self_condition`` the
        denoiser also gets :meth:`self_condition_input`.

        Args:
            denoiser: the network.
            batch: clean crystals.
            cond: ``{name: (B,)}`` condition values (NaN = unconditioned), or None.
            task: ``"csp"`` or ``"gen"`` (de novo).
            generator: optional RNG for the noise.

        Returns:
            ``(loss, logs)`` with a scalar loss tensor and float logs ``loss``, ``loss_coord``,
            ``loss_lattice``, ``loss_type``.
        """
        if task not in ("csp", "gen"):
            raise ValueError(f"task must be 'csp' or 'gen', got {task!r}")
        dev, dt = batch.frac_coords.device, batch.frac_coords.dtype
        gdev = generator.device if generator is not None else dev
        t = torch.rand(batch.num_crystals, generator=generator, device=gdev, dtype=dt).to(dev)
        if self.cfg.t_power != 1.0:
            t = t.pow(self.cfg.t_power)
        t = self.cfg.t_min + (1 - self.cfg.t_min) * t
        noisy, coord_target, lat_target, masked = self.noise(batch, t, task, generator)
        cond = self.drop_conditions(cond, self.cfg.cond_dropout, generator)
        prev = (self.self_condition_input(denoiser, noisy, t, cond, generator)
                if self.self_conditioned else None)
        out = call_denoiser(denoiser, noisy, t, cond, prev)
        l_coord = self.coords.loss(out.coord, coord_target)
        l_lat = self.lattice.loss(out.lattice, lat_target)
        return self.combine_losses(out, batch, masked, l_coord, l_lat, self.cfg.type_weight)

    def combine_losses(
        self,
        out: DenoiserOutput,
        batch: CrystalBatch,
        masked: torch.Tensor | None,
        l_coord: torch.Tensor,
        l_lat: torch.Tensor,
        type_weight: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, logs)``: the weighted sum of the coordinate and lattice losses and, where
        types are ``masked`` (de novo), the type cross-entropy; logs ``loss``, ``loss_coord``,
        ``loss_lattice``, ``loss_type`` as detached 0-dim float tensors (no host sync here: on a
        GPU that would stall the step between forward and backward; the training loop reads
        them with its one reduction per step, ``float()`` reads one elsewhere)."""
        loss = self.cfg.coord_weight * l_coord + self.cfg.lattice_weight * l_lat
        if masked is not None:
            crystals = (batch.batch, batch.num_atoms) if self.cfg.type_loss == "elbo" else None
            l_type = self.types.loss(out.type_logits, batch.atomic_numbers, masked, crystals)
            loss = loss + type_weight * l_type
        else:
            # types are fixed in CSP; the zero term keeps every parameter in the graph (DDP)
            l_type = torch.zeros_like(l_coord)
            loss = loss + 0.0 * out.type_logits.sum()
        vals = torch.stack([loss, l_coord, l_lat, l_type]).detach().float()
        logs = dict(zip(["loss", "loss_coord", "loss_lattice", "loss_type"], vals, strict=True))
        return loss, logs


def build_diffusion(cfg: DiffusionConfig, stats: DatasetStats) -> CrystalDiffusion:
    """Build the :class:`CrystalDiffusion` for ``cfg`` and the dataset ``stats``."""
    return CrystalDiffusion(cfg, stats)
