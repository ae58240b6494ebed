"""Chemical-substitution augmentation (``data.substitute``, matgen/training/_substitute.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _standin import TinyDenoiser, TinyDiffusion
from test_loop import _cfg

from matgen.crystal import CrystalBatch
from matgen.training import train
from matgen.training._substitute import (
    Substituted,
    atomic_radii,
    element_substitutes,
    substitute,
)

NA, K, LI, O, S, CL, BR = 11, 19, 3, 8, 16, 17, 35


def test_substitutes_follow_the_ionic_statistics_within_the_given_elements():
    tab = element_substitutes([NA, K, LI, O, S, CL, BR])
    assert set(tab[NA][0]) == {K, LI} and set(tab[O][0]) == {S} and BR in tab[CL][0]
    for targets, p in tab.values():
        assert set(targets) <= {NA, K, LI, O, S, CL, BR}
        assert np.all(np.diff(p) <= 0) and p.sum() <= 1 + 1e-9 and np.all(p >= 0.02)


def _crystals():
    # NaCl (2 atoms), Na2O (3 atoms), a one-element crystal of K
    z = torch.tensor([NA, CL, NA, NA, O, K])
    return CrystalBatch(atomic_numbers=z, frac_coords=torch.rand(6, 3),
                        lattice=torch.eye(3).repeat(3, 1, 1) * 4.0,
                        num_atoms=torch.tensor([2, 3, 1]),
                        properties={"band_gap": torch.tensor([1.0, 2.0, 3.0])})


def test_a_picked_crystal_swaps_every_atom_of_one_element_and_rescales_its_cell():
    table = {NA: (np.array([K]), np.array([1.0])), CL: (np.array([BR]), np.array([1.0]))}
    radii = atomic_radii()
    b = _crystals()
    out = substitute(b, np.array([True, True, False]), np.random.default_rng(0), table, radii)
    z = out.atomic_numbers.tolist()
    assert z[0:2] in ([K, CL], [NA, BR])  # one element of NaCl, all its atoms
    assert z[2:5] == [K, K, O] and z[5] == K  # Na2O: only Na is swappable; K not picked
    assert torch.equal(out.frac_coords, b.frac_coords)
    r3 = lambda zz: float((radii[np.array(zz)] ** 3).sum())
    want = (r3([K, K, O]) / r3([NA, NA, O])) ** (1 / 3)
    assert float(out.lattice[1, 0, 0]) == pytest.approx(4.0 * want)
    assert torch.equal(out.lattice[2], b.lattice[2])
    gap = out.properties["band_gap"]
    assert torch.isnan(gap[0]) and torch.isnan(gap[1]) and gap[2] == 3.0


def test_a_substitute_already_in_the_crystal_is_never_chosen():
    table = {NA: (np.array([CL]), np.array([1.0]))}  # Na -> Cl would merge NaCl's two sites
    b = _crystals()
    out = substitute(b, np.array([True, True, True]), np.random.default_rng(0), table,
                     atomic_radii())
    assert out.atomic_numbers.tolist()[:2] == [NA, CL] and out.properties["band_gap"][0] == 1.0
    # Na2O -> Cl2O would shrink the cell to 0.19 of its volume: not made either
    assert out.atomic_numbers.tolist()[2:5] == [NA, NA, O]
    assert torch.isnan(out.properties["band_gap"]).sum() == 0


def test_substituted_source_is_deterministic_per_batch_and_keeps_the_share():
    class Src:
        def __init__(self):
            self.b = _crystals()
            self.property_names = ["band_gap"]

        def __len__(self):
            return 3

        def batch(self, idx):
            return self.b[[int(i) for i in idx]]

    none = Substituted(Src(), 0.0, 0, [NA, K, LI, O, S, CL, BR])
    assert torch.equal(none.batch([0, 1, 2]).atomic_numbers, _crystals().atomic_numbers)
    every = Substituted(Src(), 1.0, 0, [NA, K, LI, O, S, CL, BR])
    a, b = every.batch([0, 1, 2]), every.batch([0, 1, 2])
    assert torch.equal(a.atomic_numbers, b.atomic_numbers)
    assert not torch.equal(a.atomic_numbers[:5], _crystals().atomic_numbers[:5])


def test_training_with_substitution_runs_and_records_it(tmp_path):
    import json

    from _standin import tiny_crystals

    res = train(_cfg(max_steps=2, data={"substitute": 0.5}), data=tiny_crystals(),
                out=tmp_path / "r", denoiser=TinyDenoiser(conditions=("band_gap",)),
                diffusion=TinyDiffusion(), progress=False, log=None)
    meta = json.loads((tmp_path / "r" / "checkpoints" / "last" / "model.json").read_text())
    assert res.step == 2 and meta["metadata"]["dataset"]["substitute"] == 0.5
    assert meta["metadata"]["dataset"]["num_crystals"] == 16


def test_a_swap_that_would_scale_the_volume_too_far_is_not_made():
    h, cs = 1, 55
    table = {LI: (np.array([cs]), np.array([1.0]))}  # Li (1.45 A) -> Cs (2.6 A): volume x5.8 in LiH
    b = CrystalBatch(atomic_numbers=torch.tensor([LI, h]), frac_coords=torch.rand(2, 3),
                     lattice=torch.eye(3)[None] * 4.0, num_atoms=torch.tensor([2]),
                     properties={"band_gap": torch.tensor([1.0])})
    out = substitute(b, np.array([True]), np.random.default_rng(0), table, atomic_radii())
    assert out.atomic_numbers.tolist() == [LI, h] and out.properties["band_gap"][0] == 1.0
