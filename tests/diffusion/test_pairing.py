"""Coordinate pairing of flow matching (diffusion.coord_pairing: species): the prior draws are
only handed out anew within a crystal's element, the paths get shorter, the greedy pairs stay
near the optimal assignment, and the training noise uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.optimize import linear_sum_assignment

from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion
from matgen.diffusion._flow import pair_within_species, signed_wrap
from matgen.testing import random_crystals

STATS = DatasetStats(mean_volume_per_atom=15.0, num_atoms_counts={3: 1, 5: 1})


def _case(sizes, seed, elements=(8, 26, 3)):
    g = torch.Generator().manual_seed(seed)
    batch = random_crystals(sizes, g)
    z = torch.tensor(elements)[torch.randint(len(elements), (batch.atomic_numbers.shape[0],),
                                             generator=g)]
    f1 = torch.rand(batch.frac_coords.shape, generator=g, dtype=batch.frac_coords.dtype)
    return batch, z, f1


def _cost(f0, f1):
    return signed_wrap(f1 - f0).square().sum(-1)


def test_draws_only_move_within_a_crystal_and_element():
    batch, z, f1 = _case([7, 1, 12, 4], seed=0)
    out = pair_within_species(batch.frac_coords, f1, z, batch.batch, batch.num_atoms)
    assert out.shape == f1.shape
    bidx = batch.batch
    for b in range(batch.num_crystals):
        for el in z[bidx == b].unique():
            sel = (bidx == b) & (z == el)
            want = sorted(map(tuple, f1[sel].tolist()))
            assert sorted(map(tuple, out[sel].tolist())) == want
    single = torch.tensor([(bidx == bidx[i]).logical_and(z == z[i]).sum() == 1
                           for i in range(z.shape[0])])
    assert torch.equal(out[single], f1[single])  # an atom alone in its element keeps its draw


def test_pairs_are_short_and_near_the_optimal_assignment():
    batch, z, f1 = _case([20] * 40, seed=1, elements=(8, 26))
    f0 = batch.frac_coords
    out = pair_within_species(f0, f1, z, batch.batch, batch.num_atoms)
    greedy = float(_cost(f0, out).sum())
    independent = float(_cost(f0, f1).sum())
    optimal = 0.0
    bidx = batch.batch
    for b in range(batch.num_crystals):
        for el in (8, 26):
            sel = ((bidx == b) & (z == el)).nonzero().squeeze(-1)
            if sel.numel() == 0:
                continue
            c = _cost(f0[sel].unsqueeze(1), f1[sel].unsqueeze(0)).numpy()
            r, k = linear_sum_assignment(c)
            optimal += float(c[r, k].sum())
    assert greedy < 0.6 * independent  # ~10 atoms per element: much shorter paths
    assert optimal <= greedy + 1e-9
    assert greedy < 1.25 * optimal


def test_greedy_finds_the_obvious_assignment():
    # two O atoms and two draws each next to the other atom: the pairs swap
    f0 = torch.tensor([[0.1, 0.1, 0.1], [0.6, 0.6, 0.6], [0.3, 0.3, 0.3]], dtype=torch.float64)
    f1 = torch.tensor([[0.62, 0.6, 0.6], [0.98, 0.1, 0.1], [0.9, 0.9, 0.9]], dtype=torch.float64)
    z = torch.tensor([8, 8, 26])
    out = pair_within_species(f0, f1, z, torch.zeros(3, dtype=torch.long), torch.tensor([3]))
    assert torch.equal(out, f1[[1, 0, 2]])  # 0.98 is 0.12 from 0.1 across the boundary


def test_training_noise_uses_the_pairing_and_only_for_flow():
    with pytest.raises(ValidationError, match="coord_pairing needs objective: flow"):
        DiffusionConfig(coord_pairing="species")
    g = torch.Generator().manual_seed(3)
    batch = random_crystals([12, 16, 9], g)
    batch.atomic_numbers[:] = 8
    t = torch.ones(3, dtype=torch.float64)  # at t = 1 the noisy coordinates are the draws
    paths = {}
    for pairing in ("none", "species"):
        diff = build_diffusion(DiffusionConfig(objective="flow", coord_pairing=pairing), STATS)
        noisy, target, _, _ = diff.noise(batch, t, "csp", torch.Generator().manual_seed(5))
        paths[pairing] = float(_cost(batch.frac_coords, noisy.frac_coords).sum())
        # the same set of draws per crystal (one element here)
        key = np.sort(noisy.frac_coords.numpy().round(12), axis=0)
        paths[pairing + "_set"] = key
        loss_in = target.square().mean()
        assert torch.isfinite(loss_in)
    np.testing.assert_array_equal(paths["none_set"], paths["species_set"])
    assert paths["species"] < 0.5 * paths["none"]
