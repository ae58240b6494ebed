"""Samplers as plain functions that take a denoiser."""

from __future__ import annotations

from collections.abc import Callable

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion._crystal import CrystalDiffusion, Denoiser
from matgen.diffusion._processes import wrap01
from matgen.nn import DenoiserOutput

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
    """
    if not cond or guidance == 1.0:
        return denoiser(batch, t, cond)
    b, n = batch.num_crystals, batch.frac_coords.shape[0]
    double = CrystalBatch(
        atomic_numbers=batch.atomic_numbers.repeat(2),
        frac_coords=batch.frac_coords.repeat(2, 1),
        lattice=batch.lattice.repeat(2, 1, 1),
        num_atoms=batch.num_atoms.repeat(2),
    )
    both = {k: torch.cat([v, torch.full_like(v, float("nan"))]) for k, v in cond.items()}
    out = denoiser(double, t.repeat(2), both)
    c = DenoiserOutput(out.coord[:n], out.lattice[:b], out.type_logits[:n])
    u = DenoiserOutput(out.coord[n:], out.lattice[b:], out.type_logits[n:])
    return combine_guidance(c, u, guidance)


def _evaluate(denoiser, state, t, cond, guidance) -> DenoiserOutput:
    return guided_call(denoiser, state, t, cond, guidance)


def _setup(denoiser, num_atoms, atomic_numbers, generator):
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


def _start(denoiser, diffusion, num_atoms, atomic_numbers, cond, generator):
    """Everything a sampler starts from: ``(device, dtype, num_atoms, cond, bidx, f, lat, z)``
    with conditions as float32 ``(B,)`` tensors on the model's device, the per-atom crystal
    index and the prior coordinates, lattices and types (all masked de novo, else the given)."""
    device, dtype, num_atoms, atomic_numbers = _setup(
        denoiser, num_atoms, atomic_numbers, generator
    )
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
    return device, dtype, num_atoms, cond, bidx, f, lat, z


def _run(
    denoiser,
    diffusion,
    num_atoms,
    atomic_numbers,
    steps,
    cond,
    guidance,
    generator,
    type_mask,
    callback,
    corrector_steps,
    deterministic,
) -> CrystalBatch:
    if steps < 1:
        raise ValueError("steps must be >= 1")
    de_novo = atomic_numbers is None
    device, dtype, num_atoms, cond, bidx, f, lat, z = _start(
        denoiser, diffusion, num_atoms, atomic_numbers, cond, generator
    )
    b, cfg = num_atoms.shape[0], diffusion.cfg
    times = torch.linspace(1.0, cfg.t_min, steps + 1, dtype=torch.float64).tolist()
    ids = [f"sample-{i}" for i in range(b)]

    def state(z_):
        return CrystalBatch(
            atomic_numbers=z_, frac_coords=f, lattice=lat, num_atoms=num_atoms, ids=ids
        )

    with torch.no_grad():
        for i in range(steps):
            t = torch.full((b,), times[i], device=device, dtype=dtype)
            s = torch.full((b,), times[i + 1], device=device, dtype=dtype)
            ta, sa = t[bidx], s[bidx]
            out = _evaluate(denoiser, state(z), t, cond, guidance)
            for c in range(corrector_steps):
                if c > 0:
                    out = _evaluate(denoiser, state(z), t, cond, guidance)
                f = diffusion.coords.corrector(f, out.coord, ta, cfg.langevin_step, generator)
            if corrector_steps > 0:
                out = _evaluate(denoiser, state(z), t, cond, guidance)
            if not deterministic:
                f = diffusion.coords.step(f, out.coord, ta, sa, generator)
                lat = diffusion.lattice.step(lat, out.lattice, t, s, num_atoms, generator)
            else:
                f = diffusion.coords.step_deterministic(f, out.coord, ta, sa)
                lat = diffusion.lattice.step_deterministic(lat, out.lattice, t, s, num_atoms)
            if de_novo:
                s_types = torch.zeros_like(sa) if i == steps - 1 else sa
                z = diffusion.types.step(z, out.type_logits, ta, s_types, generator, type_mask)
            if callback is not None:
                callback(i + 1, steps, state(z))
    props = {} if cond is None else {k: v.to(dtype) for k, v in cond.items()}
    return CrystalBatch(
        atomic_numbers=z,
        frac_coords=wrap01(f),
        lattice=lat,
        num_atoms=num_atoms,
        properties=props,
        ids=ids,
    )


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

    Returns:
        The generated crystals (``ids`` ``sample-i``; conditions copied into ``properties``).
    """
    cs = diffusion.cfg.corrector_steps if corrector_steps is None else corrector_steps
    return _run(
        denoiser,
        diffusion,
        num_atoms,
        atomic_numbers,
        steps,
        cond,
        guidance,
        generator,
        type_mask,
        callback,
        cs,
        deterministic=False,
    )


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
) -> CrystalBatch:
    """Few-step deterministic sampler: probability-flow ODE (coordinates) and DDIM (lattice).

    Coordinates take Euler steps of the torus process's probability-flow ODE, the lattice
    DDIM (eta = 0) steps, optionally after ``corrector_steps`` Langevin moves; de novo types
    are unmasked stochastically (seeded). Cost: ``steps * (1 + corrector_steps)`` denoiser
    calls; meant for 20-100 steps; same arguments as :func:`sample`.

    Measured (perov-5 CSP, 60 test rows, a 135k-parameter model trained 8 CPU minutes):
    ``sample(steps=200)`` 31.7% matches; ``sample(steps=50)`` (100 calls) 26.7%;
    ``sample_fast(steps=50)`` 11.7% (with one corrector step also 11.7%); predictor-only
    ``sample(steps=100, corrector_steps=0)`` 10.0%. For few calls prefer
    ``sample(steps=50)``; this ODE sampler is the cheapest per step.
    """
    return _run(
        denoiser,
        diffusion,
        num_atoms,
        atomic_numbers,
        steps,
        cond,
        guidance,
        generator,
        type_mask,
        callback,
        corrector_steps,
        deterministic=True,
    )
