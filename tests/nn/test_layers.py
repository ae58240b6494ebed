"""Building blocks: radial basis, condition embedding, angular descriptor invariance."""

from __future__ import annotations

import math

import torch

from matgen.nn import AngularDescriptor, ConditionEmbedding, ConditionSpec, RadialBasis
from matgen.testing import random_rotation


def test_radial_basis_vanishes_smoothly_at_cutoff():
    rb = RadialBasis(8, 5.0).double()
    d = torch.tensor([0.5, 2.0, 4.999999, 5.0, 6.0], dtype=torch.float64, requires_grad=True)
    v = rb(d)
    assert v.shape == (5, 8)
    assert v[2:].abs().max() < 1e-6
    (g,) = torch.autograd.grad(v.sum(), d)
    assert g[2:].abs().max() < 1e-4


def test_condition_embedding_null_and_classes():
    specs = [
        ConditionSpec(name="x", mean=1.0, std=2.0),
        ConditionSpec(name="sg", kind="categorical", num_classes=5),
    ]
    emb = ConditionEmbedding(specs, 8).double()
    with torch.no_grad():
        for p in emb.parameters():
            p.normal_()
    like = torch.zeros(1, dtype=torch.float64)
    base = emb(None, 3, like)
    assert torch.allclose(base, (emb.null["x"] + emb.null["sg"]).expand(3, 8))
    out = emb(
        {"x": torch.tensor([math.nan, 0.0, 3.0]), "sg": torch.tensor([1.0, 4.0, math.nan])}, 3, like
    )
    assert torch.allclose(out[0] - emb.null["x"], emb.value["sg"].weight[1])
    assert not torch.allclose(out[1], out[2])


def test_angular_descriptor_is_rotation_invariant():
    g = torch.Generator().manual_seed(0)
    ad = AngularDescriptor(4, 3, lmax=2).double()
    vec = torch.randn(30, 3, generator=g, dtype=torch.float64)
    rbf = torch.rand(30, 4, generator=g, dtype=torch.float64)
    dst = torch.randint(0, 5, (30,), generator=g)
    r = random_rotation(g)
    a = ad(vec, rbf, dst, 5)
    b = ad(vec @ r.T, rbf, dst, 5)
    assert a.shape == (5, 9) and torch.allclose(a, b, atol=1e-12)
