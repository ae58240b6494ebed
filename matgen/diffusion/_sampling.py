"""Samplers as plain functions that take a denoiser."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion._clash import repel_clashes
from matgen.diffusion._crystal import CrystalDiffusion, Denoiser, call_denoiser
from matgen.diffusion._processes import wrap01
from matgen.nn import CleanEstimate, DenoiserOutput, scatter_mean, scatter_sum

#: ``properties`` key of a sampler's result that marks (1.0) crystals whose sampling failed
#: numerically (present only when some did); their structures are not usable.
FAILED = "sampler_failed"

#: ``callback(step, total_steps, state)`` called after every predictor step.
Callback = Callable[[int, int, CrystalBatch], None]


def combine_guidance(
    cond_out: DenoiserOutput, uncond_out: DenoiserOutput, scale: float
) -> DenoiserOutput:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` for every field.

    Type logits are combined as log-probabilities. ``scale = 1`` returns the conditional output.
    """
    lu = torch.log_softmax(uncond_out.type_logits, -1)
    lc = torch.log_softmax(cond_out.type_logits, -1)
    return DenoiserOutput(
        coord=uncond_out.coord + scale * (cond_out.coord - uncond_out.coord),
        lattice=uncond_out.lattice + scale * (cond_out.lattice - uncond_out.lattice),
        type_logits=lu + scale * (lc - lu),
    )


def unconditional(cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys with every value NaN (the "unconditioned" input)."""
    return {k: torch.full_like(v, float("nan"), dtype=torch.float32) for k, v in cond.items()}


def guided_call(
    denoiser: Denoiser,
    batch: CrystalBatch,
    t: torch.Tensor,
    cond: dict[str, torch.Tensor] | None,
    guidance: float,
    prev: CleanEstimate | None = None,
) -> DenoiserOutput:
    """One classifier-free-guided denoiser evaluation.

    The conditional and unconditional inputs go through the denoiser as one batch of twice
    the size (one call instead of two, better accelerator use); without conditions or with
    ``guidance == 1`` it is a plain call.

    Args:
        denoiser: the conditional denoiser.
        batch: noisy crystals (B of them, N atoms).
        t: ``(B,)`` times.
        cond: ``{name: (B,)}`` conditions or None.
        guidance: scale G.
        prev: the previous clean estimate (self-conditioning) or None; both halves get it.
    """
    if not cond or guidance == 1.0:
        return call_denoiser(denoiser, batch, t, cond, prev)
    b, n = batch.num_crystals, batch.frac_coords.shape[0]
    double = CrystalBatch(
        atomic_numbers=batch.atomic_numbers.repeat(2),
        frac_coords=batch.frac_coords.repeat(2, 1),
        lattice=batch.lattice.repeat(2, 1, 1),
        num_atoms=batch.num_atoms.repeat(2),
    )
    both = {k: torch.cat([v, torch.full_like(v, float("nan"))]) for k, v in cond.items()}
    out = call_denoiser(denoiser, double, t.repeat(2), both,
                        None if prev is None else prev.repeat(2))
    c = DenoiserOutput(out.coord[:n], out.lattice[:b], out.type_logits[:n])
    u = DenoiserOutput(out.coord[n:], out.lattice[b:], out.type_logits[n:])
    return combine_guidance(c, u, guidance)


def _setup(denoiser, num_atoms, atomic_numbers):
    params = list(denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else []
    if params:
        device, dtype = params[0].device, params[0].dtype
    else:
        device, dtype = num_atoms.device, torch.get_default_dtype()
    num_atoms = num_atoms.to(device=device, dtype=torch.long)
    if atomic_numbers is not None:
        atomic_numbers = atomic_numbers.to(device=device, dtype=torch.long)
        if atomic_numbers.shape[0] != int(num_atoms.sum()):
            raise ValueError("atomic_numbers must have num_atoms.sum() entries")
    return device, dtype, num_atoms, atomic_numbers


@dataclass
class SamplerState:
    """The crystals a sampler carries from step to step.

    Attributes:
        f: ``(N, 3)`` fractional coordinates (unwrapped while integrating).
        lat: ``(B, 3, 3)`` lattices.
        z: ``(N,)`` atom types (the mask class de novo until unmasked).
        num_atoms: ``(B,)`` long.
        bidx: ``(N,)`` crystal index of each atom.
        cond: ``{name: (B,)}`` float32 conditions on the model's device, or None.
        de_novo: types are generated (else fixed, CSP).
        device, dtype: the model's.
        prev: the last step's clean estimate (self-conditioned models), None before the first.
    """

    f: torch.Tensor
    lat: torch.Tensor
    z: torch.Tensor
    num_atoms: torch.Tensor
    bidx: torch.Tensor
    cond: dict[str, torch.Tensor] | None
    de_novo: bool
    device: torch.device
    dtype: torch.dtype
    ids: list[str] = field(default_factory=list)
    failed: torch.Tensor | None = None
    prev: CleanEstimate | None = None

    @property
    def num_crystals(self) -> int:
        return self.num_atoms.shape[0]

    def guard(self, out: DenoiserOutput | None = None) -> DenoiserOutput | None:
        """Isolate numerical failures per crystal: a crystal whose state (or denoiser output)
        is not finite is marked in ``failed`` and its non-finite values are zeroed (its lattice
        reset to a unit cube), so one bad crystal cannot poison the batch."""
        bad_atom = ~torch.isfinite(self.f).all(-1)
        bad = ~torch.isfinite(self.lat).flatten(1).all(-1)
        if out is not None:
            # -inf logits are masked classes (chemsys), not failures
            bad_logit = torch.isnan(out.type_logits) | (out.type_logits == float("inf"))
            bad_atom |= ~torch.isfinite(out.coord).all(-1) | bad_logit.any(-1)
            bad |= ~torch.isfinite(out.lattice).flatten(1).all(-1)
        bad |= scatter_sum(bad_atom.to(self.f.dtype), self.bidx, self.num_crystals) > 0
        self.failed = bad if self.failed is None else self.failed | bad
        eye = torch.eye(3, dtype=self.lat.dtype, device=self.lat.device)
        self.lat = torch.where(bad.view(-1, 1, 1), eye, self.lat)
        self.f = torch.nan_to_num(self.f, 0.0, 0.0, 0.0)
        if out is None:
            return None
        return DenoiserOutput(coord=torch.nan_to_num(out.coord, 0.0, 0.0, 0.0),
                              lattice=torch.nan_to_num(out.lattice, 0.0, 0.0, 0.0),
                              type_logits=torch.nan_to_num(out.type_logits, 0.0, 0.0,
                                                           float("-inf")))

    def times(self, value: float) -> torch.Tensor:
        """``(B,)`` copies of one time on the model's device and dtype."""
        return torch.full((self.num_crystals,), value, device=self.device, dtype=self.dtype)

    def batch(self, frac_coords: torch.Tensor | None = None) -> CrystalBatch:
        """The current crystals (``frac_coords`` replaces the coordinates when given)."""
        return CrystalBatch(atomic_numbers=self.z,
                            frac_coords=self.f if frac_coords is None else frac_coords,
                            lattice=self.lat, num_atoms=self.num_atoms, ids=self.ids)

    def result(self, frac_coords: torch.Tensor) -> CrystalBatch:
        """The generated crystals (conditions copied into ``properties``)."""
        props = {} if self.cond is None else {k: v.to(self.dtype) for k, v in self.cond.items()}
        if self.failed is not None and bool(self.failed.any()):
            props[FAILED] = self.failed.to(self.dtype)
        return CrystalBatch(atomic_numbers=self.z, frac_coords=frac_coords, lattice=self.lat,
                            num_atoms=self.num_atoms, properties=props, ids=self.ids)


def _start(denoiser, diffusion, num_atoms, atomic_numbers, cond, generator) -> SamplerState:
    """Everything a sampler starts from: conditions as float32 ``(B,)`` tensors on the model's
    device, the per-atom crystal index and the prior coordinates, lattices and types (all
    masked de novo, else the given); ``ids`` ``sample-i``."""
    device, dtype, num_atoms, atomic_numbers = _setup(denoiser, num_atoms, atomic_numbers)
    if cond is not None:
        cond = {
            k: torch.as_tensor(v, device=device, dtype=torch.float32).reshape(-1)
            for k, v in cond.items()
        }
    like = torch.empty(0, device=device, dtype=dtype)
    b, n = num_atoms.shape[0], int(num_atoms.sum())
    bidx = torch.repeat_interleave(torch.arange(b, device=device), num_atoms, output_size=n)
    f = diffusion.coords.prior(n, like, generator)
    lat = diffusion.lattice.prior(num_atoms, like, generator)
    z = diffusion.types.prior(n, device) if atomic_numbers is None else atomic_numbers
    return SamplerState(f, lat, z, num_atoms, bidx, cond, atomic_numbers is None, device, dtype,
                        [f"sample-{i}" for i in range(b)])


def linear_times(steps: int, t_min: float) -> list[float]:
    """The default schedule of :func:`sample` and :func:`sample_fast`: ``steps + 1`` times
    from 1 down to ``t_min``, evenly spaced (float64)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64).tolist()


def _corrected_output(denoiser, diffusion, st: SamplerState, t, guidance, generator,
                      corrector_steps: int) -> DenoiserOutput:
    """The (guided) denoiser output at ``t`` after ``corrector_steps`` Langevin moves of the
    coordinates (each move re-evaluates the denoiser)."""
    ta = t[st.bidx]
    out = guided_call(denoiser, st.batch(), t, st.cond, guidance, st.prev)
    for c in range(corrector_steps):
        if c > 0:
            out = guided_call(denoiser, st.batch(), t, st.cond, guidance, st.prev)
        st.f = diffusion.coords.corrector(st.f, out.coord, ta, diffusion.cfg.langevin_step,
                                          generator)
    if corrector_steps > 0:
        out = guided_call(denoiser, st.batch(), t, st.cond, guidance, st.prev)
    return out


def _ancestral_step(diffusion, st: SamplerState, out: DenoiserOutput, t, s, generator) -> None:
    """Reverse VE-SDE on the torus and DDPM on the lattice, ``t -> s``."""
    st.f = diffusion.coords.step(st.f, out.coord, t[st.bidx], s[st.bidx], generator)
    st.lat = diffusion.lattice.step(st.lat, out.lattice, t, s, st.num_atoms, generator)


def _deterministic_step(diffusion, st: SamplerState, out: DenoiserOutput, t, s,
                        generator) -> None:
    """Probability-flow Euler on the torus and DDIM (eta = 0) on the lattice, ``t -> s``."""
    st.f = diffusion.coords.step_deterministic(st.f, out.coord, t[st.bidx], s[st.bidx])
    st.lat = diffusion.lattice.step_deterministic(st.lat, out.lattice, t, s, st.num_atoms)


def _flow_step(diffusion, st: SamplerState, out: DenoiserOutput, t, s, generator) -> None:
    """Euler step of the learned flow, ``t -> s``: the centred coordinate velocity (scaled by
    ``1 + flow_slope * (1 - t)``) and the lattice velocity; then clashing atoms are pushed
    apart (``clash_scale``, ``clash_floor``, :func:`matgen.diffusion._clash.repel_clashes`)."""
    v = out.coord - scatter_mean(out.coord, st.bidx, st.num_crystals)[st.bidx]
    st.f = diffusion.coords.step(st.f, v, t[st.bidx], s[st.bidx], diffusion.cfg.flow_slope)
    st.lat = diffusion.lattice.step(st.lat, out.lattice, t, s, st.num_atoms)
    st.f = repel_clashes(st.f, st.lat, st.z, st.bidx, st.num_atoms, diffusion.cfg.clash_scale,
                         generator, diffusion.cfg.clash_floor)


def _flow_schedule(steps: int, times) -> list[float]:
    """A flow model's Euler schedule: ``times`` or ``steps`` even steps from 1 to 0."""
    return list(times) if times is not None else linear_times(steps, 0.0)


def _unmask_types(diffusion, st: SamplerState, out: DenoiserOutput, t, s, last: bool,
                  generator, type_mask) -> None:
    """De novo: unmask types between ``t`` and ``s`` (all of them at the last step)."""
    if st.de_novo:
        s_types = torch.zeros_like(s) if last else s
        st.z = diffusion.types.step(st.z, out.type_logits, t[st.bidx], s_types[st.bidx],
                                    generator, type_mask, diffusion.cfg.type_temperature,
                                    _order_by(diffusion, st), diffusion.cfg.type_remask)


def _order_by(diffusion, st: SamplerState) -> tuple[torch.Tensor, torch.Tensor] | None:
    """What :meth:`MaskedTypeProcess.step` needs to reveal types in confidence order
    (``diffusion.cfg.type_order``): each atom's crystal and the atoms per crystal; None for
    the random order."""
    return (st.bidx, st.num_atoms) if diffusion.cfg.type_order == "confidence" else None


def _integrate(denoiser, diffusion, st: SamplerState, times: Sequence[float], predictor,
               guidance, generator, type_mask, callback, corrector_steps) -> CrystalBatch:
    """Walk ``times`` (decreasing, ``steps + 1`` of them): corrector moves, one ``predictor``
    step, type unmasking; the coordinates are wrapped at the end. A self-conditioned model gets
    the previous step's clean estimate (none at the first step)."""
    steps = len(times) - 1
    if steps < 1:
        raise ValueError("steps must be >= 1")
    with torch.no_grad():
        for i in range(steps):
            t, s = st.times(times[i]), st.times(times[i + 1])
            out = st.guard(_corrected_output(denoiser, diffusion, st, t, guidance, generator,
                                             corrector_steps))
            if diffusion.self_conditioned:  # the next step sees this step's estimate
                st.prev = diffusion.clean_estimate(st.batch(), out, t, st.bidx)
            predictor(diffusion, st, out, t, s, generator)
            _unmask_types(diffusion, st, out, t, s, i == steps - 1, generator, type_mask)
            if callback is not None:
                callback(i + 1, steps, st.batch())
        st.guard()
    return st.result(wrap01(st.f))


def sample(
    denoiser: Denoiser,
    diffusion: CrystalDiffusion,
    num_atoms: torch.Tensor,
    atomic_numbers: torch.Tensor | None = None,
    steps: int = 1000,
    cond: dict[str, torch.Tensor] | None = None,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    type_mask: torch.Tensor | None = None,
    callback: Callback | None = None,
    corrector_steps: int | None = None,
    times: Sequence[float] | None = None,
) -> CrystalBatch:
    """Predictor-corrector sampler (DiffCSP-style) for CSP or de novo generation.

    Each of ``steps`` steps runs ``corrector_steps`` Langevin corrector moves on the
    fractional coordinates at the current noise level, then one ancestral predictor step for
    every field: reverse VE-SDE on the torus, DDPM on the lattice, unmasking of types (de novo).
    Cost: ``steps * (1 + corrector_steps)`` denoiser calls (twice that with guidance).

    Args:
        denoiser: ``(batch, t, cond) -> DenoiserOutput``; its device/dtype are used.
        diffusion: the :class:`CrystalDiffusion` it was trained with.
        num_atoms: ``(B,)`` atoms per crystal (mixed sizes are fine).
        atomic_numbers: ``(N,)`` fixed types for CSP (ordered by crystal), or None for de novo.
        steps: predictor steps.
        cond: ``{name: (B,)}`` condition values (NaN = unconditioned).
        guidance: classifier-free guidance scale (1 = plain conditional model).
        generator: RNG; the same seed gives the same samples. Noise is drawn on the
            generator's device and moved to the model's, so a CPU generator gives the same noise
            on any device (a generator on the model's device avoids the transfers).
        type_mask: ``(K,)`` bool, allowed element classes (class k is Z = k + 1); de novo only.
        callback: ``callback(step, steps, state)`` after each step (progress bars).
        corrector_steps: overrides ``diffusion.cfg.corrector_steps``.
        times: the schedule, ``steps + 1`` decreasing times from about 1 to ``t_min``
            (overrides ``steps``); default :func:`linear_times`.

    Returns:
        The generated crystals (``ids`` ``sample-i``; conditions copied into ``properties``).
    """
    if diffusion.is_flow:
        return sample_fast(denoiser, diffusion, num_atoms, atomic_numbers, steps, cond,
                           guidance, generator, type_mask, callback, 0, times)
    cs = diffusion.cfg.corrector_steps if corrector_steps is None else corrector_steps
    times = list(times) if times is not None else linear_times(steps, diffusion.cfg.t_min)
    st = _start(denoiser, diffusion, num_atoms, atomic_numbers, cond, generator)
    return _integrate(denoiser, diffusion, st, times, _ancestral_step, guidance,
                      generator, type_mask, callback, cs)


def sample_fast(
    denoiser: Denoiser,
    diffusion: CrystalDiffusion,
    num_atoms: torch.Tensor,
    atomic_numbers: torch.Tensor | None = None,
    steps: int = 50,
    cond: dict[str, torch.Tensor] | None = None,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    type_mask: torch.Tensor | None = None,
    callback: Callback | None = None,
    corrector_steps: int = 0,
    times: Sequence[float] | None = None,
) -> CrystalBatch:
    """Few-step deterministic sampler: probability-flow ODE (coordinates) and DDIM (lattice).

    Coordinates take Euler steps of the torus process's probability-flow ODE, the lattice
    DDIM (eta = 0) steps, optionally after ``corrector_steps`` Langevin moves; de novo types
    are unmasked stochastically (seeded). Cost: ``steps * (1 + corrector_steps)`` denoiser
    calls; meant for 20-100 steps; same arguments as :func:`sample` (``times`` included).

    For a score model with few denoiser calls, ``sample(steps=50)`` matched more structures
    than this sampler at the same cost in a small perov-5 CSP test; this ODE sampler is the
    cheapest per step.

    A flow-matching model (``diffusion.is_flow``) integrates its learned velocity field with
    Euler steps from t = 1 to 0 (``times`` default: ``steps`` even steps; no corrector).
    """
    st = _start(denoiser, diffusion, num_atoms, atomic_numbers, cond, generator)
    if diffusion.is_flow:
        return _integrate(denoiser, diffusion, st, _flow_schedule(steps, times),
                          _flow_step, guidance, generator, type_mask, callback, 0)
    times = list(times) if times is not None else linear_times(steps, diffusion.cfg.t_min)
    return _integrate(denoiser, diffusion, st, times, _deterministic_step, guidance,
                      generator, type_mask, callback, corrector_steps)
