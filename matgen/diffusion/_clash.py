"""Clash repulsion for the flow sampler (``DiffusionConfig.clash_scale``).

Two atoms of one element can end on one spot: the denoiser is continuous and blind to atom
identity, so once two like atoms meet while the anti-annealed Euler steps pull everything onto
the predicted crystal (in traced samples between steps 25 and 40 of 50), they get the same
velocity and stay together. Such a crystal is structurally invalid (two atoms within 0.5 Å), and no
later step can separate them.

After each Euler step every pair of atoms closer than ``clash_scale * (r_i + r_j)`` (``r``: the
covalent radii of :func:`matgen.crystal.covalent_radii`, their mean for a still-masked de novo
atom) is pushed apart along its separation, each atom by half the shortfall, a few sweeps per
step; atoms on the same spot separate in a random (seeded) direction. Distances are taken
between the nearest fractional images (shortest fractional difference, then Cartesian), which
is the true nearest image except in strongly sheared cells. The denoiser then sees two atoms
where it saw one and can send them to different sites; the push itself is small (it only
restores a fraction of a bond length).

``clash_floor`` adds an absolute distance in Å that every pair keeps, whatever its radii: at the
default scale the scaled radius sum of two H atoms is 0.25 Å and of two F atoms 0.46 Å, while the
shortest pair in any of MP-20's 9,894 training crystals is 0.748 Å (H-H in SnH4, mp-1079902).
"""

from __future__ import annotations

import functools

import torch

from matgen.crystal import covalent_radii
from matgen.diffusion._flow import signed_wrap
from matgen.diffusion._processes import _randn
from matgen.nn import atom_slots, inv3, to_dense

#: Sweeps of pairwise pushes per sampler step.
SWEEPS = 3


@functools.lru_cache(maxsize=8)
def _radii(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(covalent_radii(), device=device, dtype=dtype)


def repel_clashes(f: torch.Tensor, lattice: torch.Tensor, z: torch.Tensor, bidx: torch.Tensor,
                  num_atoms: torch.Tensor, scale: float,
                  generator: torch.Generator | None = None, floor: float = 0.0) -> torch.Tensor:
    """Push apart atoms closer than ``scale`` times the sum of their covalent radii, or than
    ``floor`` Å.

    Args:
        f: ``(N, 3)`` fractional coordinates (unwrapped is fine).
        lattice: ``(B, 3, 3)`` lattice rows in Å.
        z: ``(N,)`` atomic numbers (0: masked, given the mean radius).
        bidx: ``(N,)`` crystal of each atom (atoms ordered by crystal).
        num_atoms: ``(B,)``.
        scale: fraction of the covalent bond length kept free (0: none).
        generator: for the directions of atoms on the same spot.
        floor: Å that every pair keeps (0: none); with ``scale <= 0`` and ``floor <= 0`` off.

    Returns:
        ``(N, 3)`` the moved fractional coordinates (not wrapped).
    """
    if (scale <= 0 and floor <= 0) or f.shape[0] < 2:
        return f
    b, m = num_atoms.shape[0], int(num_atoms.max())
    pos = atom_slots(bidx, num_atoms)
    present = to_dense(torch.ones_like(bidx, dtype=torch.bool), bidx, pos, b, m)
    table = _radii(f.device, f.dtype)
    radius = to_dense(table[z.clamp(0, table.shape[0] - 1)], bidx, pos, b, m)
    need = (max(scale, 0.0) * (radius.unsqueeze(2) + radius.unsqueeze(1))).clamp_min(floor)
    pair = present.unsqueeze(2) & present.unsqueeze(1)
    pair &= ~torch.eye(m, dtype=torch.bool, device=f.device)
    inverse = inv3(lattice)
    dense = to_dense(f, bidx, pos, b, m)
    for _ in range(SWEEPS):
        d = signed_wrap(dense.unsqueeze(2) - dense.unsqueeze(1))  # f_i - f_j
        cart = torch.einsum("bijk,bkl->bijl", d, lattice)
        dist = cart.norm(dim=-1)
        short = pair & (dist < need)
        if not bool(short.any()):
            break
        unit = cart / dist.clamp_min(1e-12).unsqueeze(-1)
        same = short & (dist < 1e-6)
        if bool(same.any()):  # antisymmetric random directions, so i and j move apart
            rnd = _randn(cart.shape, cart, generator)
            rnd = rnd - rnd.transpose(1, 2)
            rnd = rnd / rnd.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            unit = torch.where(same.unsqueeze(-1), rnd, unit)
        gap = torch.where(short, 0.5 * (need - dist), torch.zeros_like(dist))
        move = (gap.unsqueeze(-1) * unit).sum(2)  # (B, M, 3) Cartesian
        dense = dense + torch.einsum("bik,bkl->bil", move, inverse)
    return dense[bidx, pos]
