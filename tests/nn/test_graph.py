"""The batched periodic graph is complete and equals ASE's neighbour list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list

from matgen.nn import periodic_radius_graph
from matgen.testing import random_crystals, random_unimodular


def _sorted_pairs(src, dst, dist):
    rows = np.stack([dst, src, np.round(dist, 9)], -1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("cutoff", [3.0, 6.0])
def test_graph_matches_ase_neighbor_list(cutoff):
    g = torch.Generator().manual_seed(0)
    batch = random_crystals([1, 2, 5, 12], g, volume_per_atom=11.0)
    # make one cell very skewed (same crystal, other basis) to exercise the image range
    m = random_unimodular(g)
    batch.lattice[2] = m @ batch.lattice[2]
    batch.frac_coords[batch.ptr[2] : batch.ptr[3]] = torch.remainder(
        batch.frac_coords[batch.ptr[2] : batch.ptr[3]] @ torch.linalg.inv(m), 1.0
    )
    graph = periodic_radius_graph(batch.frac_coords, batch.lattice, batch.num_atoms, cutoff)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(batch.to_atoms()):
        i, j, d = neighbor_list("ijd", atoms, cutoff)
        sel = (graph.edge_crystal == b).numpy()
        ours = _sorted_pairs(
            graph.src.numpy()[sel] - ptr[b],
            graph.dst.numpy()[sel] - ptr[b],
            graph.dist.numpy()[sel],
        )
        ref = _sorted_pairs(j, i, d)
        assert ours.shape == ref.shape, (b, ours.shape, ref.shape)
        assert np.allclose(ours, ref, atol=1e-7)
    # vectors are consistent with distances and point from dst to the image of src
    assert torch.allclose(graph.vec.norm(dim=-1), graph.dist)


def test_graph_one_atom_and_empty_neighbourhood():
    lat = torch.eye(3).unsqueeze(0) * 10.0
    g = periodic_radius_graph(torch.zeros(1, 3), lat, torch.tensor([1]), cutoff=5.0)
    assert g.src.numel() == 0
    g = periodic_radius_graph(torch.zeros(1, 3), lat / 4, torch.tensor([1]), cutoff=5.0)
    # simple cubic a = 2.5 A: shells at 2.5 (6), 3.54 (12), 4.33 (8), 5.0 excluded
    assert g.src.numel() == 26


def test_degenerate_cell_is_capped_not_exploding():
    lat = torch.diag(torch.tensor([5.0, 5.0, 1e-3])).unsqueeze(0)
    g = periodic_radius_graph(
        torch.rand(20, 3), lat, torch.tensor([20]), cutoff=5.0, max_candidates=100_000
    )
    assert g.src.numel() <= 100_000
