"""Consistency distillation of a trained crystal denoiser into a few-step sampler.

A consistency model maps any point ``x_t`` of a probability-flow ODE trajectory to the
trajectory's clean end ``x_0`` (Song et al. 2023). Here the student has the teacher's
architecture and output heads, and its consistency function is read out of them in closed form:

* fractional coordinates (torus): ``f_0 = f_t + sigma(t)^2 * score`` (the Tweedie step of the
  wrapped-normal process; compared modulo 1);
* lattice: the clean lattice implied by the predicted noise (the same ``predict_x0`` the DDPM /
  DDIM steps use, in the frame of the noisy cell's polar rotation), in Å;
* atom types (de novo): the masked-type logits; they keep their denoising cross-entropy, and the
  sampler unmasks with them over its few steps.

At ``t = t_min`` both read-outs are the identity up to ``sigma_min^2`` and the clipped DDPM
inverse, so the boundary condition ``f(x, t_min) = x`` holds by construction, as the skip
parametrisation of the original paper ensures.

Training (:class:`ConsistencyDistillation`, used by ``matgen train`` when the config has a
``distill`` section): the interval ``[t_min, 1]`` is cut into ``N`` pieces; per crystal an
index ``n`` is drawn, the clean crystal is noised to ``t_{n+1}``, one deterministic teacher step
(probability-flow Euler for the torus, DDIM for the lattice: the teacher's ``sample_fast``) goes
to ``t_n`` and the loss pulls the student's read-out at ``t_{n+1}`` towards its own (gradient-
stopped) read-out at ``t_n`` (the stop-gradient target of improved consistency training,
Song & Dhariwal 2023). At ``n = 0`` the target is the teacher's point itself. Conditions are
dropped as in the teacher's training, so classifier-free guidance still works per step.

Sampling (:func:`sample_consistency`): read out ``x_0`` at ``t = 1``; for more steps re-noise it
to the next time of the schedule and read out again (multistep consistency sampling).
"""

from __future__ import annotations

from typing import Literal

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion._crystal import CrystalDiffusion, Denoiser
from matgen.diffusion._processes import _randn, wrap01
from matgen.diffusion._sampling import Callback, _order_by, _start, guided_call
from matgen.nn import DenoiserOutput


def consistency_readout(
    diffusion: CrystalDiffusion, state: CrystalBatch, out: DenoiserOutput, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean crystal ``(f_0 (N, 3) unwrapped, L_0 (B, 3, 3))`` a denoiser output implies.

    Args:
        diffusion: the process the outputs refer to.
        state: the noisy crystals the denoiser saw.
        out: its output (coordinate score, lattice noise residual).
        t: ``(B,)`` times.
    """
    ta = t[state.batch]
    coords = diffusion.coords
    sigma2 = (coords.sigma(ta) ** 2).unsqueeze(-1)
    score = out.coord * torch.sqrt(coords.score_norm(ta)).unsqueeze(-1)
    f0 = state.frac_coords + sigma2 * score
    lat = diffusion.lattice
    pred = out.lattice + lat.skip(state.lattice, t, state.num_atoms)
    x, c, q = lat._x(state.lattice, state.num_atoms)
    x0 = lat.predict_x0(x, pred, lat.alpha_bar(t).view(-1, 1, 1))
    return f0, lat._l(x0, c, q)


def _teacher_step(
    diffusion: CrystalDiffusion, state: CrystalBatch, out: DenoiserOutput, t, s
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic teacher step ``t -> s`` (``(B,)`` times): PF-ODE Euler and DDIM."""
    bidx = state.batch
    f = diffusion.coords.step_deterministic(state.frac_coords, out.coord, t[bidx], s[bidx])
    lat = diffusion.lattice.step_deterministic(
        state.lattice, out.lattice, t, s, state.num_atoms
    )
    return f, lat


class ConsistencyDistillation:
    """The consistency-distillation loss around a frozen teacher.

    Behaves like a :class:`CrystalDiffusion` for the training loop (``loss``,
    ``drop_conditions``, ``stats``, ``cfg``, ``to``) and exposes the teacher's processes.

    Args:
        diffusion: the teacher's diffusion (same config and data statistics as the student's).
        teacher: the trained denoiser (frozen; kept in eval mode).
        intervals: ``N``, pieces of ``[t_min, 1]`` the teacher's ODE is discretised into.
        coord_scale: fractional-coordinate differences are measured in units of this.
        type_weight: weight of the types' cross-entropy (de novo batches).
        lattice_scale: lattice differences are measured in units of this times the prior's
            ``lattice_sigma * c``.

    Distances: fractional coordinates modulo 1 in units of ``coord_scale``; lattices in units
    of ``lattice_scale * lattice_sigma * c``, weighted by ``abar(t)``.
    """

    def __init__(
        self,
        diffusion: CrystalDiffusion,
        teacher: torch.nn.Module,
        intervals: int = 40,
        coord_scale: float = 0.05,
        type_weight: float = 1.0,
        lattice_scale: float = 1.0,
    ) -> None:
        if intervals < 1:
            raise ValueError("intervals must be >= 1")
        if diffusion.cfg.objective != "score":
            raise ValueError("consistency distillation needs a score-matching teacher "
                             f"(diffusion.objective: score), got {diffusion.cfg.objective!r}; "
                             "a flow-matching model samples in few Euler steps already")
        self.base, self.teacher = diffusion, teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.intervals, self.coord_scale, self.type_weight = intervals, coord_scale, type_weight
        self.lattice_scale = lattice_scale
        self.cfg, self.stats = diffusion.cfg, diffusion.stats
        self.coords, self.lattice, self.types = diffusion.coords, diffusion.lattice, diffusion.types

    def to(self, device) -> ConsistencyDistillation:
        self.teacher.to(device)
        return self

    def drop_conditions(self, cond, p, generator=None):
        return self.base.drop_conditions(cond, p, generator)

    def grid(self, like: torch.Tensor) -> torch.Tensor:
        """``(N + 1,)`` times ``t_0 = t_min < ... < t_N = 1``."""
        tmin = self.cfg.t_min
        k = torch.arange(self.intervals + 1, device=like.device, dtype=like.dtype)
        return tmin + (1 - tmin) * k / self.intervals

    def loss(
        self,
        denoiser: Denoiser,
        batch: CrystalBatch,
        cond: dict[str, torch.Tensor] | None = None,
        task: Literal["csp", "gen"] = "csp",
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Consistency loss of one batch; logs ``loss``, ``loss_coord``, ``loss_lattice``,
        ``loss_type``."""
        if task not in ("csp", "gen"):
            raise ValueError(f"task must be 'csp' or 'gen', got {task!r}")
        dev, dt = batch.frac_coords.device, batch.frac_coords.dtype
        gdev = generator.device if generator is not None else dev
        n = torch.randint(0, self.intervals, (batch.num_crystals,), generator=generator,
                          device=gdev).to(dev)
        grid = self.grid(torch.empty(0, device=dev, dtype=dt))
        t, s = grid[n + 1], grid[n]
        noisy, _, _, masked = self.base.noise(batch, t, task, generator)
        bidx, zt = noisy.batch, noisy.atomic_numbers
        cond = self.drop_conditions(cond, self.cfg.cond_dropout, generator)
        with torch.no_grad():
            fs, ls = _teacher_step(self, noisy, self.teacher(noisy, t, cond), t, s)
            at_s = CrystalBatch(atomic_numbers=zt, frac_coords=fs, lattice=ls,
                                num_atoms=batch.num_atoms, ids=list(batch.ids))
            f_tgt, l_tgt = consistency_readout(self, at_s, denoiser(at_s, s, cond), s)
            boundary = n == 0
            f_tgt = torch.where(boundary[bidx].unsqueeze(-1), fs, f_tgt).float()
            l_tgt = torch.where(boundary.view(-1, 1, 1), ls, l_tgt).float()
        out = denoiser(noisy, t, cond)
        f_pred, l_pred = consistency_readout(self, noisy, out, t)
        d = f_pred.float() - f_tgt
        d = d - torch.round(d)
        l_coord = (d / self.coord_scale).pow(2).mean()
        c = self.lattice.scale(batch.num_atoms, l_pred).view(-1, 1, 1).float()
        # weight abar(t) = 1 / (1 + sigma_VE(t)^2): the read-out from the noise prediction
        # amplifies errors by 1 / sqrt(abar) near t = 1 (consistency models' 1 / (sigma^2 +
        # sigma_data^2) weighting with the normalised lattice's unit data scale)
        w = self.lattice.alpha_bar(t).view(-1, 1, 1).float()
        unit = self.lattice_scale * self.cfg.lattice_sigma * c
        l_lat = (w * ((l_pred.float() - l_tgt) / unit).pow(2)).mean()
        return self.base.combine_losses(out, batch, masked, l_coord, l_lat, self.type_weight)


def consistency_times(steps: int) -> list[float]:
    """Times the multistep sampler reads out at: ``1, 1 - 1/steps, ..., 1/steps``."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return [1.0 - i / steps for i in range(steps)]


def sample_consistency(
    denoiser: Denoiser,
    diffusion: CrystalDiffusion,
    num_atoms: torch.Tensor,
    atomic_numbers: torch.Tensor | None = None,
    steps: int = 2,
    cond: dict[str, torch.Tensor] | None = None,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    type_mask: torch.Tensor | None = None,
    callback: Callback | None = None,
    times: list[float] | None = None,
) -> CrystalBatch:
    """Multistep consistency sampling with a distilled denoiser (CSP or de novo).

    Step ``i`` evaluates the (guided) student at ``times[i]``, reads out the clean coordinates
    and lattice (:func:`consistency_readout`), unmasks de novo types between ``times[i]`` and
    the next time (all of them at the last step), and, unless it is the last step, re-noises the
    read-out to the next time with the forward processes. Cost: ``steps`` denoiser calls (twice
    that with guidance). Arguments as :func:`matgen.diffusion.sample`; ``times`` overrides
    :func:`consistency_times`.
    """
    times = list(times) if times is not None else consistency_times(steps)
    st = _start(denoiser, diffusion, num_atoms, atomic_numbers, cond, generator)
    with torch.no_grad():
        for i, tv in enumerate(times):
            last = i == len(times) - 1
            t, s = st.times(tv), st.times(0.0 if last else times[i + 1])
            state = st.batch()
            out = guided_call(denoiser, state, t, st.cond, guidance)
            f0, l0 = consistency_readout(diffusion, state, out, t)
            if st.de_novo:
                st.z = diffusion.types.step(st.z, out.type_logits, t[st.bidx], s[st.bidx],
                                            generator, type_mask,
                                            diffusion.cfg.type_temperature,
                                            _order_by(diffusion, st),
                                            diffusion.cfg.type_remask)
            if last:
                st.f, st.lat = wrap01(f0), l0
            else:
                _renoise(diffusion, st, f0, l0, s, generator)
            if callback is not None:
                callback(i + 1, len(times), st.batch(wrap01(st.f)))
    return st.result(st.f)


def _renoise(diffusion: CrystalDiffusion, st, f0: torch.Tensor, l0: torch.Tensor,
             s: torch.Tensor, generator) -> None:
    """Noise a read-out ``(f0, l0)`` forward to the times ``s`` (multistep sampling)."""
    sig = diffusion.coords.sigma(s[st.bidx]).unsqueeze(-1)
    st.f = wrap01(f0 + sig * _randn(f0.shape, f0, generator))
    st.lat, _ = diffusion.lattice.add_noise(l0, s, st.num_atoms, generator)
