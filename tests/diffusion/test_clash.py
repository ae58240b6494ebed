"""Clash repulsion of the flow sampler (diffusion.clash_scale): atoms closer than the scaled sum
of their covalent radii are pushed apart (across the cell boundary too), others never move,
crystals of a batch do not touch each other, and a sampler whose network sends two like atoms
onto one spot ends with them apart only when the repulsion is on."""

from __future__ import annotations

import pytest
import torch

from matgen.crystal import CrystalBatch, covalent_radii
from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion, sample_fast
from matgen.diffusion._clash import repel_clashes
from matgen.diffusion._flow import TORUS_SCALE, signed_wrap
from matgen.nn import DenoiserOutput

STATS = DatasetStats(mean_volume_per_atom=15.0, num_atoms_counts={2: 1})
R_SE = float(covalent_radii()[34])


def _cart_dist(f, lattice, i, j):
    d = signed_wrap(f[i] - f[j])
    return float((d @ lattice).norm())


def test_a_coincident_pair_is_pushed_to_the_scaled_bond_length():
    f = torch.tensor([[0.3, 0.3, 0.3], [0.3, 0.3, 0.3], [0.8, 0.8, 0.8]], dtype=torch.float64)
    lat = 5.0 * torch.eye(3, dtype=torch.float64).unsqueeze(0)
    z = torch.tensor([34, 34, 42])
    g = torch.Generator().manual_seed(0)
    out = repel_clashes(f, lat, z, torch.zeros(3, dtype=torch.long), torch.tensor([3]), 0.5, g)
    assert _cart_dist(out, lat[0], 0, 1) == pytest.approx(0.5 * 2 * R_SE, rel=1e-6)
    assert torch.equal(out[2], f[2])  # far from both: untouched
    # the pair moved symmetrically about its old spot
    assert torch.allclose(out[0] + out[1], 2 * f[0], atol=1e-12)


def test_close_atoms_across_the_boundary_and_batches_stay_apart():
    f = torch.tensor([[0.01, 0.5, 0.5], [0.99, 0.5, 0.5],       # crystal 0: 0.1 A apart via x
                      [0.0, 0.0, 0.0], [0.5, 0.5, 0.5],         # crystal 1: far apart
                      [0.01, 0.5, 0.5]], dtype=torch.float64)   # crystal 2: alone
    lat = 5.0 * torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    z = torch.tensor([8, 8, 8, 8, 8])
    bidx = torch.tensor([0, 0, 1, 1, 2])
    out = repel_clashes(f, lat, z, bidx, torch.tensor([2, 2, 1]), 0.5)
    need = 0.5 * 2 * float(covalent_radii()[8])
    assert _cart_dist(out, lat[0], 0, 1) == pytest.approx(need, rel=1e-6)
    assert out[0, 0] > 0.01 and out[1, 0] < 0.99  # apart along the short way, across x = 0
    assert torch.equal(out[2:], f[2:])


def test_scale_zero_is_off_and_the_config_refuses_score_models():
    f = torch.zeros(2, 3)
    assert repel_clashes(f, torch.eye(3).unsqueeze(0), torch.tensor([1, 1]),
                         torch.zeros(2, dtype=torch.long), torch.tensor([2]), 0.0) is f
    with pytest.raises(ValueError, match="clash_scale and clash_floor need objective: flow"):
        DiffusionConfig(objective="score", clash_scale=0.5)
    with pytest.raises(ValueError, match="need objective: flow"):
        DiffusionConfig(objective="score", clash_floor=0.7)


def test_the_floor_keeps_pairs_whose_scaled_radii_are_tiny_apart():
    """Two H atoms 0.3 A apart: at scale 0.4 their free length is 0.25 A, so only the floor
    (0.7 A, under MP-20's shortest training pair) pushes them; Se-Se, whose scaled length is
    larger, is pushed to that length, not to the floor."""
    lat = 5.0 * torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    f = torch.tensor([[0.5, 0.5, 0.5], [0.56, 0.5, 0.5]] * 2, dtype=torch.float64)
    z = torch.tensor([1, 1, 34, 34])
    bidx, n = torch.tensor([0, 0, 1, 1]), torch.tensor([2, 2])
    plain = repel_clashes(f, lat, z, bidx, n, 0.4)
    assert torch.equal(plain[:2], f[:2])
    floored = repel_clashes(f, lat, z, bidx, n, 0.4, floor=0.7)
    assert _cart_dist(floored, lat[0], 0, 1) == pytest.approx(0.7, rel=1e-6)
    assert _cart_dist(floored, lat[1], 2, 3) == pytest.approx(0.4 * 2 * R_SE, rel=1e-6)
    assert _cart_dist(repel_clashes(f, lat, z, bidx, n, 0.0, floor=0.7), lat[0], 0, 1) == \
        pytest.approx(0.7, rel=1e-6)  # the floor alone works too


class OneSpot:
    """A network whose velocity sends both atoms of every crystal onto one point (0.5, 0.5,
    0.5) and the lattice onto a 5 Å cube: a collapse the sampler cannot undo by itself."""

    def __init__(self, diff):
        self.diff = diff

    def __call__(self, batch: CrystalBatch, t, cond=None) -> DenoiserOutput:
        tt = t.clamp(min=1e-9)
        coord = signed_wrap(batch.frac_coords - 0.5) / (tt[batch.batch, None] * TORUS_SCALE)
        c = self.diff.lattice.scale(batch.num_atoms, batch.lattice).view(-1, 1, 1)
        cube = 5.0 * torch.eye(3, dtype=batch.lattice.dtype)
        lat = (batch.lattice - cube) / (tt.view(-1, 1, 1) * self.diff.lattice.rel * c)
        logits = torch.zeros(batch.frac_coords.shape[0], 94, dtype=batch.lattice.dtype)
        return DenoiserOutput(coord=coord, lattice=lat, type_logits=logits)


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_the_sampler_keeps_like_atoms_apart_only_with_the_repulsion(scale):
    diff = build_diffusion(DiffusionConfig(objective="flow", flow_slope=10.0,
                                           clash_scale=scale), STATS)
    torch.set_default_dtype(torch.float64)
    try:
        g = torch.Generator().manual_seed(1)
        out = sample_fast(OneSpot(diff), diff, torch.tensor([2, 2, 2]),
                          torch.tensor([34] * 6), steps=20, generator=g)
    finally:
        torch.set_default_dtype(torch.float32)
    dists = [_cart_dist(out.frac_coords, out.lattice[k], 2 * k, 2 * k + 1) for k in range(3)]
    if scale == 0.0:
        assert max(dists) < 1e-6
    else:
        assert min(dists) == pytest.approx(scale * 2 * R_SE, rel=1e-6)
