"""Batched FIRE relaxation: agreement with ASE, per-structure failure isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from matgen.surrogates import MLIPOutput, RelaxConfig, relax, relax_ase


def test_batched_relax_agrees_with_ase(chgnet, perturbed_pair):
    cfg = RelaxConfig(fmax=0.05, max_steps=200)
    rb = relax(perturbed_pair, chgnet, cfg, ids=["nacl", "si"])
    ra = relax_ase(perturbed_pair, chgnet, cfg)
    for a, b in zip(ra, rb, strict=True):
        assert b.error is None and b.converged and a.converged
        assert b.max_force < 0.05
        assert b.steps > 3  # the perturbation needed real work
        assert abs(a.energy_per_atom - b.energy_per_atom) < 2e-3  # eV/atom
        assert b.structure.volume == pytest.approx(a.structure.volume, rel=5e-3)
    assert [r.id for r in rb] == ["nacl", "si"]


class _Harmonic:
    """A fake MLIP: springs pulling atoms to their start sites; zero stress; NaN on request."""

    name = "harmonic"
    device = torch.device("cpu")

    def __init__(self, ref, nan_if=lambda s: False):
        self.ref = ref
        self.nan_if = nan_if

    def predict(self, structures, compute_stress=True):
        es, fs, ss, errs = [], [], [], []
        for s in structures:
            d = s.cart_coords - self.ref[len(s)]
            e, f = 0.5 * (d**2).sum() / len(s), -d
            if self.nan_if(s):
                e, f = math.nan, f * math.nan
            es.append(e)
            fs.append(torch.as_tensor(f))
            ss.append(torch.zeros(3, 3, dtype=torch.float64))
            errs.append(None if math.isfinite(e) else "non-finite energy, forces or stress")
        return MLIPOutput(torch.tensor(es, dtype=torch.float64), torch.cat(fs),
                          torch.stack(ss), errs)


def test_fire_converges_on_a_harmonic_potential(rock_salt, diamond_si):
    ref = {len(s): s.cart_coords.copy() for s in (rock_salt, diamond_si)}
    rng = np.random.default_rng(1)
    from pymatgen.core import Structure

    moved = [
        Structure(s.lattice, s.species, s.cart_coords + rng.normal(0, 0.1, (len(s), 3)),
                  coords_are_cartesian=True)
        for s in (rock_salt, diamond_si)
    ]
    res = relax(moved, _Harmonic(ref), RelaxConfig(fmax=1e-3, max_steps=300))
    for r, s in zip(res, (rock_salt, diamond_si), strict=True):
        assert r.converged and r.error is None
        assert np.abs(r.structure.cart_coords - s.cart_coords).max() < 2e-3


def test_nan_structure_is_isolated(rock_salt, diamond_si, one_atom):
    ref = {len(s): s.cart_coords.copy() for s in (rock_salt, diamond_si, one_atom)}
    mlip = _Harmonic(ref, nan_if=lambda s: len(s) == 2)
    res = relax([rock_salt, diamond_si, one_atom], mlip, RelaxConfig(max_steps=20, batch_size=2))
    assert [r.error is None for r in res] == [True, False, True]
    assert "non-finite" in res[1].error and math.isnan(res[1].energy_per_atom)
    assert res[0].converged and res[2].converged


def test_exploding_and_graphless_structures_are_reported(chgnet, perturbed_pair):
    from pymatgen.core import Lattice, Structure

    isolated = Structure(Lattice.cubic(15.0), ["Si", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cfg = RelaxConfig(fmax=0.1, max_steps=100, batch_size=2)
    res = relax([perturbed_pair[0], isolated, perturbed_pair[1]], chgnet, cfg)
    assert res[0].error is None and res[2].error is None
    assert res[0].converged and res[2].converged
    assert "graph" in res[1].error and "isolated" in res[1].error
    # the clean structures get the same energies as when relaxed without the bad one
    alone = relax(perturbed_pair, chgnet, cfg)
    assert res[0].energy_per_atom == pytest.approx(alone[0].energy_per_atom, abs=1e-4)
    assert res[2].energy_per_atom == pytest.approx(alone[1].energy_per_atom, abs=1e-4)


def test_volume_explosion_is_caught(rock_salt):
    class Blow(_Harmonic):
        def predict(self, structures, compute_stress=True):
            out = super().predict(structures, compute_stress)
            out.stress[:] = -torch.eye(3, dtype=torch.float64) * 5.0  # pushes cells apart
            return out

    ref = {len(rock_salt): rock_salt.cart_coords.copy()}
    res = relax([rock_salt], Blow(ref), RelaxConfig(max_steps=300, max_volume_ratio=2.0))
    assert res[0].error is not None and "exploded" in res[0].error


def test_vectorized_forward_matches_chgnet_forward(chgnet, perturbed_pair, triclinic, one_atom):
    from matgen.surrogates import CHGNetMLIP

    ref = CHGNetMLIP(model=chgnet.model, device="cpu", vectorized=False)
    ss = [*perturbed_pair, triclinic, one_atom]
    a, b = chgnet.predict(ss), ref.predict(ss)
    assert chgnet.vectorized and not ref.vectorized
    assert torch.allclose(a.energy_per_atom, b.energy_per_atom, atol=1e-5)
    assert torch.allclose(a.forces, b.forces, atol=1e-4)
    assert torch.allclose(a.stress, b.stress, atol=1e-5)
    assert float(b.forces.abs().max()) > 0.05  # perturbed: non-trivial forces
