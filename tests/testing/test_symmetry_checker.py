"""The checker reports each kind of violation (and passes exact models)."""

from __future__ import annotations

import torch

from matgen.nn import DenoiserOutput
from matgen.testing import check_symmetries, random_crystals, random_rotation, random_unimodular

SYMS = ("rotation", "reflection", "permutation", "translation", "basis_change")


def _exact(batch, t):
    # invariant scalars times equivariant quantities: exact for every symmetry
    n = batch.frac_coords.shape[0]
    lat = batch.lattice
    vol = torch.linalg.det(lat).abs()
    lattice = lat * (vol ** (1 / 3)).view(-1, 1, 1) * t.view(-1, 1, 1)
    logits = batch.atomic_numbers.to(lat.dtype).unsqueeze(-1).expand(n, 5) * 0.1
    return DenoiserOutput(
        coord=torch.zeros(n, 3, dtype=lat.dtype), lattice=lattice, type_logits=logits
    )


def test_exact_toy_model_passes():
    batch = random_crystals([1, 4, 9], torch.Generator().manual_seed(0))
    errs = check_symmetries(
        _exact, batch, generator=torch.Generator().manual_seed(1), symmetries=SYMS
    )
    assert max(errs.values()) < 1e-12, errs


def test_each_violation_is_detected():
    batch = random_crystals([2, 4, 9], torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)

    def uses_frac(b, t):  # breaks translation (and basis change)
        out = _exact(b, t)
        return DenoiserOutput(b.frac_coords.clone(), out.lattice, out.type_logits)

    def uses_gram(b, t):  # trace of the Gram matrix: invariant under rotation, not basis change
        out = _exact(b, t)
        tr = torch.diagonal(b.lattice @ b.lattice.transpose(1, 2), dim1=1, dim2=2).sum(-1)
        return DenoiserOutput(out.coord, out.lattice * tr.view(-1, 1, 1), out.type_logits)

    def fixed_axis(b, t):  # a Cartesian constant in the lattice output: breaks rotation
        out = _exact(b, t)
        return DenoiserOutput(
            out.coord, out.lattice + torch.eye(3, dtype=b.lattice.dtype), out.type_logits
        )

    def index_dependent(b, t):  # depends on atom order: breaks permutation
        out = _exact(b, t)
        idx = torch.arange(b.frac_coords.shape[0], dtype=b.lattice.dtype)
        return DenoiserOutput(out.coord, out.lattice, out.type_logits + idx.unsqueeze(-1))

    def chiral(b, t):  # a pseudo-scalar (signed volume) breaks reflection only
        out = _exact(b, t)
        det = torch.linalg.det(b.lattice)
        return DenoiserOutput(out.coord, out.lattice * det.view(-1, 1, 1), out.type_logits)

    e = check_symmetries(uses_frac, batch, generator=g, symmetries=SYMS)
    assert e["translation"] > 1e-2 and e["rotation"] < 1e-12
    e = check_symmetries(uses_gram, batch, generator=g, symmetries=SYMS)
    assert e["basis_change"] > 1e-2 and e["rotation"] < 1e-12 and e["translation"] < 1e-12
    e = check_symmetries(fixed_axis, batch, generator=g, symmetries=SYMS)
    assert e["rotation"] > 1e-2 and e["translation"] < 1e-12
    e = check_symmetries(index_dependent, batch, generator=g, symmetries=SYMS)
    assert e["permutation"] > 1e-2 and e["rotation"] < 1e-12
    e = check_symmetries(chiral, batch, generator=g, symmetries=SYMS)
    assert e["reflection"] > 1e-2 and e["rotation"] < 1e-10


def test_cartesian_kinds_for_surrogates():
    batch = random_crystals([3, 5], torch.Generator().manual_seed(0))

    def surrogate(b, t):
        forces = torch.zeros_like(b.cart_coords)
        stress = b.lattice.transpose(1, 2) @ b.lattice  # sum_k a_k a_k^T: rotation-covariant
        return {"energy": b.volume, "forces": forces, "stress": stress}

    e = check_symmetries(surrogate, batch, generator=torch.Generator().manual_seed(1))
    assert e["rotation"] < 1e-12 and e["translation"] < 1e-12
    assert e["basis_change"] > 1e-3  # L^T L depends on the basis


def test_random_helpers():
    g = torch.Generator().manual_seed(0)
    r = random_rotation(g)
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=r.dtype), atol=1e-12)
    assert abs(float(torch.linalg.det(r)) - 1) < 1e-12
    m = random_unimodular(g)
    assert abs(float(torch.linalg.det(m)) - 1) < 1e-12 and torch.equal(m, m.round())
    b = random_crystals([1, 52], g)
    assert b.num_atoms.tolist() == [1, 52] and (torch.linalg.det(b.lattice) > 0).all()
