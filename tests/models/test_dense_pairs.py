"""DenseDenoiser's pair options (model.distance_rbf, model.edge_update): the minimum-image
distances agree with pymatgen's and the exact symmetries hold with both on (that a checkpoint
without them loads and computes the same: tests/models/test_dense_grow.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from matgen.models import DenoiserConfig, build_denoiser
from matgen.models._dense import pair_distances
from matgen.testing import check_symmetries, random_crystals

TINY = DenoiserConfig(arch="dense", hidden=32, layers=2, num_freqs=4, distance_rbf=16,
                      edge_update=True)
PLAIN = TINY.model_copy(update={"distance_rbf": 0, "edge_update": False})


def _randomised(seed: int):
    """The pair model with its zero-initialised branches drawn at random (zeros would hide
    bugs)."""
    torch.manual_seed(seed)
    model = build_denoiser(TINY).double()
    with torch.no_grad():
        branches = [*model.dist_edge.parameters(),
                    *(p for b in model.blocks for p in b.edge_out.parameters())]
        for p in branches:
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minimum_image_distances_agree_with_pymatgen(seed):
    from pymatgen.core import Lattice, Structure

    g = torch.Generator().manual_seed(seed)
    batch = random_crystals([7], g)
    s = Structure(Lattice(batch.lattice[0].numpy()), batch.atomic_numbers.tolist(),
                  batch.frac_coords.numpy()).get_reduced_structure("niggli")
    f = torch.tensor(s.frac_coords % 1.0).unsqueeze(0)
    lat = torch.tensor(s.lattice.matrix).unsqueeze(0)
    got = pair_distances(f, lat)[0].numpy()
    want = s.distance_matrix
    off = ~np.eye(len(s), dtype=bool)
    assert np.allclose(got[off], want[off], atol=1e-9)
    # the diagonal: an atom to its nearest own copy, the shortest non-zero lattice vector
    m = s.lattice.matrix
    shortest = min(np.linalg.norm(np.array(n) @ m)
                   for n in itertools.product(range(-2, 3), repeat=3) if any(n))
    assert np.allclose(np.diag(got), shortest, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_symmetries_hold_with_distances_and_edge_updates(seed):
    model = _randomised(seed)
    g = torch.Generator().manual_seed(seed)
    batch = random_crystals([1, 3, 6, 20], g)
    errs = check_symmetries(lambda b, t: model(b, t), batch, generator=g,
                            symmetries=("rotation", "reflection", "permutation", "translation"))
    assert max(errs.values()) < 1e-10, errs
    plain = build_denoiser(PLAIN).double()
    plain.load_state_dict(model.state_dict(), strict=False)
    t = torch.full((4,), 0.5, dtype=torch.float64)
    assert not torch.allclose(model(batch, t).coord, plain(batch, t).coord)  # really used


@pytest.mark.parametrize("option", [{"distance_rbf": 8}, {"edge_update": True}])
def test_the_options_need_the_dense_network(option):
    with pytest.raises(ValueError, match="needs arch: dense"):
        DenoiserConfig(arch="radius", **option)
