"""Flow matching on the crystal fields (``DiffusionConfig.objective == "flow"``).

Time runs as in the diffusion: ``t = 1`` is the prior, ``t = 0`` the data. Each field moves on a
straight path (a geodesic) from its data value to a prior draw, and the denoiser predicts the
constant velocity of that path (conditional flow matching; Lipman et al. 2023; on the torus
as in FlowMM, Miller et al. 2024). Sampling integrates the learned velocity field from ``t = 1``
to ``t = 0`` with Euler steps: a deterministic ODE, so few steps go a long way.

- Fractional coordinates: ``f_t = f_0 + t d (mod 1)`` with ``d`` the shortest displacement
  from ``f_0`` to a uniform draw (each component in ``[-1/2, 1/2)``). The target is ``d`` minus
  its mean over the crystal's atoms (a common shift of all atoms is no change of the crystal,
  and the translation-invariant denoiser cannot predict it), divided by ``sqrt(1/12)`` (unit
  variance).
- Lattice: ``L_t = (1 - t) L_0 + t L_1`` with ``L_1 = c Q_0 + s eps`` (the lattice process's
  prior: a cube of the data's mean density ``c``, in the frame of ``L_0``'s polar rotation
  ``Q_0``, plus Gaussian noise of scale ``s = lattice_sigma * c``). Drawing the prior in the
  data's own frame keeps the pair rotation-equivariant, so a rotation-equivariant denoiser can
  predict the velocity ``(L_1 - L_0) / s``.
- Atom types (de novo) keep the absorbing-state process of the diffusion: masked with
  probability ``t`` (the masking interpolant of discrete flow matching).

Pairing (``DiffusionConfig.coord_pairing == "species"``, training only): the prior draws of a
crystal's atoms are handed out anew within each element, each data atom taking a near draw
(greedy: repeatedly the closest remaining pair on the torus) instead of the one drawn for its slot.
The set of draws is the same uniform one, so the sampler's start is unchanged, but the paths are
shorter and cross less, so the velocity the network must learn is less of an average over
unrelated paths (equivariant flow matching with an optimal-transport-like coupling over
permutations, Klein et al. 2023; here within an element, as the atoms of one element are
interchangeable).

Sampling velocity scale ("inference anti-annealing", FlowMM): the coordinate velocity is
multiplied by ``1 + slope * (1 - t)``, which pulls atoms harder onto the data manifold near
the end; ``slope = 0`` is the plain flow. A scaled step is never longer than the remaining
time ``t`` (it would overshoot the end point the velocity predicts; see ``TorusFlow.step``).
"""

from __future__ import annotations

import math

import torch

from matgen.diffusion._processes import LatticeProcess, _rand, _randn, wrap01
from matgen.nn import atom_slots, to_dense

#: Standard deviation of a component of the torus displacement (uniform on [-1/2, 1/2)).
TORUS_SCALE = math.sqrt(1.0 / 12.0)


def signed_wrap(d: torch.Tensor) -> torch.Tensor:
    """Shortest representative of a fractional displacement, each component in ``[-1/2, 1/2)``."""
    return d - torch.floor(d + 0.5)


class TorusFlow:
    """Geodesic flow matching of fractional coordinates on the 3-torus (see the module)."""

    scale = TORUS_SCALE

    def prior(self, num: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        """``(num, 3)`` uniform fractional coordinates."""
        return _rand((num, 3), like, generator)

    def add_noise(self, f0: torch.Tensor, t: torch.Tensor, generator=None, pairing=None):
        """Interpolate ``f0 (N, 3)`` towards a uniform draw to per-atom times ``t (N,)``.

        ``pairing``: ``(z (N,), bidx (N,), num_atoms (B,))`` to hand the draws out within each
        crystal's elements (:func:`pair_within_species`), or None (each atom its own draw).

        Returns:
            ``(f_t, d / scale)``: the velocity target before the per-crystal centring that
            :meth:`CrystalDiffusion.noise` applies.
        """
        f1 = self.prior(f0.shape[0], f0, generator)
        if pairing is not None:
            f1 = pair_within_species(f0, f1, *pairing)
        d = signed_wrap(f1 - f0)
        return wrap01(f0 + t.unsqueeze(-1) * d), d / self.scale

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the normalised velocity."""
        return (pred - target).pow(2).mean()

    def step(self, ft, velocity, t, s, slope: float = 0.0):
        """Euler step from ``t`` to ``s < t`` (per-atom ``(N,)`` times) with the normalised,
        centred ``velocity`` scaled by ``1 + slope * (1 - t)``.

        The scaled step never goes past the path's end point: on a straight path the
        velocity ``v`` at ``t`` points at ``f_t - t v``, so a step longer than ``t`` (a large
        slope with few steps, near ``t = 0``) would overshoot the crystal it predicts. It is
        cut to ``t``, which lands on that prediction."""
        length = torch.minimum((t - s) * (1.0 + slope * (1.0 - t)), t).unsqueeze(-1)
        return wrap01(ft - length * self.scale * velocity)

    def clean(self, ft, velocity, t):
        """The path's end point that the centred ``velocity`` at per-atom times ``t (N,)``
        predicts: ``f_t - t v`` (unwrapped)."""
        return ft - t.unsqueeze(-1) * self.scale * velocity


def pair_within_species(f0: torch.Tensor, f1: torch.Tensor, z: torch.Tensor, bidx: torch.Tensor,
                        num_atoms: torch.Tensor) -> torch.Tensor:
    """``f1 (N, 3)`` reordered so that each atom of ``f0 (N, 3)`` gets a near draw of its own
    crystal and element: greedily, the closest remaining (atom, draw) pair by squared torus
    distance, until every atom has one. Only draws of the same crystal and element are swapped,
    so per crystal and element the set of draws is unchanged. One padded ``(B, M, M)`` cost
    per batch and ``M`` (the largest crystal's atoms) rounds of a batched arg-min: nothing
    waits for the GPU but the one size."""
    n = f0.shape[0]
    if n < 2:
        return f1
    b, m = num_atoms.shape[0], int(num_atoms.max())
    pos = atom_slots(bidx, num_atoms)
    a = to_dense(f0, bidx, pos, b, m)
    c = to_dense(f1, bidx, pos, b, m)
    zz = to_dense(z + 1, bidx, pos, b, m)  # 0 marks padding
    cost = signed_wrap(c.unsqueeze(1) - a.unsqueeze(2)).square().sum(-1)  # atom i, draw j
    same = (zz.unsqueeze(2) == zz.unsqueeze(1)) & (zz > 0).unsqueeze(2)
    cost = torch.where(same, cost, torch.full_like(cost, math.inf))
    take = torch.arange(m, device=f0.device).expand(b, m).clone()  # atom i -> draw take[i]
    rows = torch.arange(b, device=f0.device)
    for _ in range(m):
        best, flat = cost.view(b, -1).min(1)
        i, j = flat // m, flat % m
        found = torch.isfinite(best)
        take[rows, i] = torch.where(found, j, take[rows, i])
        cost[rows, i, :] = math.inf
        cost[rows, :, j] = math.inf
    return c[bidx, take[bidx, pos]]


class LatticeFlow:
    """Straight-line flow matching of the lattice matrix to the cube prior (see the module).

    Args:
        mean_volume_per_atom: Å^3 (sets the prior cube ``c``).
        lattice_sigma: prior noise in units of ``c``.
    """

    def __init__(self, mean_volume_per_atom: float, lattice_sigma: float = 0.2) -> None:
        self.vpa, self.rel = float(mean_volume_per_atom), float(lattice_sigma)
        cube = LatticeProcess(mean_volume_per_atom, lattice_sigma)  # the same prior cube
        self.scale, self.prior = cube.scale, cube.prior

    def add_noise(self, l0: torch.Tensor, t: torch.Tensor, num_atoms: torch.Tensor, generator=None):
        """Interpolate ``l0 (B, 3, 3)`` to times ``t (B,)``; returns ``(L_t, (L_1 - L_0) / s)``."""
        c = self.scale(num_atoms, l0).view(-1, 1, 1)
        eps = _randn(l0.shape, l0, generator)
        l1 = c * LatticeProcess.polar_rotation(l0) + self.rel * c * eps
        tt = t.view(-1, 1, 1)
        return (1 - tt) * l0 + tt * l1, (l1 - l0) / (self.rel * c)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the normalised velocity."""
        return (pred - target).pow(2).mean()

    def step(self, lt, velocity, t, s, num_atoms):
        """Euler step from ``t`` to ``s < t`` (``(B,)`` times)."""
        c = self.scale(num_atoms, lt).view(-1, 1, 1)
        return lt - (t - s).view(-1, 1, 1) * self.rel * c * velocity

    def clean(self, lt, velocity, t, num_atoms):
        """The lattice at ``t = 0`` that ``velocity`` at ``t (B,)`` predicts."""
        return self.step(lt, velocity, t, torch.zeros_like(t), num_atoms)
