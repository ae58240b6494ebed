"""The types' cross-entropy with the ELBO weighting (``diffusion.type_loss: elbo``): each
crystal's masked atoms weigh its atoms over its masked atoms, against hand-computed sums."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from matgen.crystal import CrystalBatch
from matgen.diffusion import DatasetStats, DiffusionConfig, MaskedTypeProcess, build_diffusion
from matgen.nn import DenoiserOutput


def _bidx(num_atoms):
    return torch.repeat_interleave(torch.arange(len(num_atoms)), num_atoms)


def _case():
    g = torch.Generator().manual_seed(0)
    num_atoms = torch.tensor([10, 4, 6])
    z0 = torch.randint(1, 95, (20,), generator=g)
    logits = torch.randn(20, 94, generator=g)
    masked = torch.zeros(20, dtype=torch.bool)
    masked[3] = True  # crystal 0: 1 of 10 masked
    masked[10:14] = True  # crystal 1: all 4 masked; crystal 2: none
    ce = torch.nn.functional.cross_entropy(logits, z0 - 1, reduction="none")
    return num_atoms, z0, logits, masked, ce


def test_elbo_weights_each_crystal_by_its_atoms_over_its_masked_atoms():
    num_atoms, z0, logits, masked, ce = _case()
    proc = MaskedTypeProcess()
    pooled = proc.loss(logits, z0, masked)
    elbo = proc.loss(logits, z0, masked, (_bidx(num_atoms), num_atoms))
    assert torch.allclose(pooled, (ce[3] + ce[10:14].sum()) / 5)
    # crystal 0: 10/1 * ce[3]; crystal 1: 4/4 * its four; crystal 2: nothing; over 20 atoms
    assert torch.allclose(elbo, (10 * ce[3] + ce[10:14].sum()) / 20)
    assert not torch.allclose(pooled, elbo)


def test_elbo_equals_the_pooled_mean_when_every_atom_is_masked_and_is_zero_with_none():
    num_atoms, z0, logits, _, ce = _case()
    proc = MaskedTypeProcess()
    everything = torch.ones(20, dtype=torch.bool)
    crystals = (_bidx(num_atoms), num_atoms)
    assert torch.allclose(proc.loss(logits, z0, everything, crystals), ce.mean())
    nothing = torch.zeros(20, dtype=torch.bool)
    assert float(proc.loss(logits, z0, nothing, crystals)) == 0.0


def test_the_diffusion_loss_uses_the_configured_weighting():
    num_atoms, z0, logits, masked, ce = _case()
    batch = CrystalBatch(atomic_numbers=z0, frac_coords=torch.rand(20, 3),
                         lattice=torch.eye(3).expand(3, 3, 3) * 4.0, num_atoms=num_atoms)
    out = DenoiserOutput(coord=torch.zeros(20, 3), lattice=torch.zeros(3, 3, 3),
                         type_logits=logits.requires_grad_())
    zero = torch.zeros(())
    losses = {}
    for how in ("atoms", "elbo"):
        diff = build_diffusion(DiffusionConfig(objective="flow", type_loss=how),
                               DatasetStats(mean_volume_per_atom=20.0))
        loss, logs = diff.combine_losses(out, batch, masked, zero, zero, 2.0)
        losses[how] = float(logs["loss_type"])
        assert torch.allclose(loss, 2.0 * logs["loss_type"])
        loss.backward()  # gradients reach the logits either way
        assert logits.grad is not None and float(logits.grad[masked].abs().sum()) > 0
        assert float(logits.grad[~masked].abs().sum()) == 0.0
        logits.grad = None
    assert losses["atoms"] == pytest.approx(float((ce[3] + ce[10:14].sum()) / 5), rel=1e-6)
    assert losses["elbo"] == pytest.approx(float((10 * ce[3] + ce[10:14].sum()) / 20), rel=1e-6)


def test_an_unknown_weighting_is_refused():
    with pytest.raises(ValidationError, match="type_loss"):
        DiffusionConfig(type_loss="uniform")
