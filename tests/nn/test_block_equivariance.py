"""Each equivariant block of the radius denoiser alone, in float32 and float64.

The whole-model test (tests/models/test_denoiser.py) runs in float64 only; these check every
block on its own under rotations, reflections and atom permutations, in both precisions, so a
symmetry bug is pinned to its block and a float32-only failure (what training and sampling
run in) cannot hide behind float64's margin. Errors are relative to the output's size; the
tolerance of each precision is about 100x the largest error measured on these inputs (float64
~5e-16, float32 ~3e-7).
"""

from __future__ import annotations

import pytest
import torch

from matgen.nn import AngularDescriptor, EquivariantBlock, RadialBasis, periodic_radius_graph
from matgen.testing import random_crystals, random_rotation

TOL = {torch.float32: 2e-5, torch.float64: 5e-14}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest entry (at least 1)."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max().clamp(min=1.0))


def _orthogonal(g: torch.Generator, reflect: bool, dtype: torch.dtype) -> torch.Tensor:
    r = random_rotation(g)
    if reflect:
        r = r @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=r.dtype))
    return r.to(dtype)


def _graph_inputs(dtype: torch.dtype, seed: int = 0):
    """A small batch of two 'crystals' with random edges inside each, as the blocks see it."""
    g = torch.Generator().manual_seed(seed)
    hidden, vectors, radial = 16, 4, 8
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    src, dst = [], []
    for members in ([0, 1, 2, 3], [4, 5, 6]):
        m = torch.tensor(members)
        pairs = torch.cartesian_prod(m, m)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        src.append(pairs[:, 0])
        dst.append(pairs[:, 1])
    src, dst = torch.cat(src).repeat(2), torch.cat(dst).repeat(2)  # two images per pair
    e = src.shape[0]
    vec = 3.0 * torch.randn(e, 3, generator=g, dtype=torch.float64)
    return {
        "s": torch.randn(7, hidden, generator=g, dtype=torch.float64).to(dtype),
        "v": torch.randn(7, 3, vectors, generator=g, dtype=torch.float64).to(dtype),
        "t_emb": torch.randn(2, hidden, generator=g, dtype=torch.float64).to(dtype),
        "batch": batch,
        "rbf": RadialBasis(radial, 6.0).to(dtype)(vec.norm(dim=1).to(dtype)),
        "vec": vec.to(dtype),
        "src": src,
        "dst": dst,
        "sizes": (hidden, vectors, radial),
    }


def _block(dtype: torch.dtype, hidden: int, vectors: int, radial: int) -> EquivariantBlock:
    torch.manual_seed(0)
    block = EquivariantBlock(hidden, vectors, radial, avg_neighbors=6.0).to(dtype)
    with torch.no_grad():  # larger weights than at init: the vector paths must matter
        for p in block.parameters():
            p.mul_(2.0)
    return block


def _run(block, x, vec, v, first):
    unit = vec / vec.norm(dim=1, keepdim=True)
    return block(x["s"], v, x["t_emb"], x["batch"], x["rbf"], unit, x["src"], x["dst"], first)


@DTYPES
@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
@pytest.mark.parametrize("first", [True, False], ids=["first", "later"])
def test_equivariant_block_scalars_invariant_vectors_rotate(dtype, reflect, first):
    x = _graph_inputs(dtype)
    block = _block(dtype, *x["sizes"])
    r = _orthogonal(torch.Generator().manual_seed(1), reflect, dtype)
    s, v = _run(block, x, x["vec"], x["v"], first)
    rv = torch.einsum("ij,njc->nic", r, x["v"])
    s2, v2 = _run(block, x, x["vec"] @ r.T, rv, first)
    assert v.abs().max() > 0.1  # the vector channels carry signal
    assert _rel(s, s2) < TOL[dtype]
    assert _rel(torch.einsum("ij,njc->nic", r, v), v2) < TOL[dtype]


@DTYPES
def test_equivariant_block_commutes_with_atom_permutations(dtype):
    x = _graph_inputs(dtype)
    block = _block(dtype, *x["sizes"])
    perm = torch.tensor([4, 2, 0, 6, 1, 5, 3])  # new position -> old atom (mixes crystals)
    inv = torch.argsort(perm)
    s, v = _run(block, x, x["vec"], x["v"], False)
    y = dict(x, s=x["s"][perm], batch=x["batch"][perm], src=inv[x["src"]], dst=inv[x["dst"]])
    s2, v2 = _run(block, y, x["vec"], x["v"][perm], False)
    assert _rel(s[perm], s2) < TOL[dtype]
    assert _rel(v[perm], v2) < TOL[dtype]


@DTYPES
@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_angular_descriptor_invariant(dtype, reflect):
    x = _graph_inputs(dtype)
    ad = AngularDescriptor(x["sizes"][2], 5, lmax=2).to(dtype)
    r = _orthogonal(torch.Generator().manual_seed(2), reflect, dtype)
    a = ad(x["vec"], x["rbf"], x["dst"], 7)
    b = ad(x["vec"] @ r.T, x["rbf"], x["dst"], 7)
    assert a.abs().max() > 0.1
    assert _rel(a, b) < TOL[dtype]


def _edges(graph, frac, lattice, num_atoms):
    """``{(src, dst, image): edge vector}``; the image shift recovered from the vector."""
    owner = torch.repeat_interleave(torch.arange(lattice.shape[0]), num_atoms)
    cart = torch.einsum("ni,nij->nj", frac.double(), lattice.double()[owner])
    shift = torch.einsum(
        "ei,eij->ej",
        cart[graph.dst] + graph.vec.double() - cart[graph.src],
        torch.linalg.inv(lattice.double())[graph.edge_crystal],
    )
    keys = zip(graph.src.tolist(), graph.dst.tolist(), map(tuple, shift.round().long().tolist()))
    return dict(zip(keys, graph.vec, strict=True))


@DTYPES
@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_periodic_graph_edges_fixed_and_vectors_rotate(dtype, reflect):
    g = torch.Generator().manual_seed(3)
    crystals = random_crystals([1, 3, 8], g)
    frac, lat, na = crystals.frac_coords.to(dtype), crystals.lattice.to(dtype), crystals.num_atoms
    r = _orthogonal(g, reflect, dtype)
    lat_r = lat @ r.T  # rows are lattice vectors: the Cartesian frame rotates
    e1 = _edges(periodic_radius_graph(frac, lat, na, 5.0), frac, lat, na)
    e2 = _edges(periodic_radius_graph(frac, lat_r, na, 5.0), frac, lat_r, na)
    assert len(e1) > 20 and set(e1) == set(e2)
    keys = sorted(e1)
    a = torch.stack([e1[k] for k in keys]) @ r.T
    b = torch.stack([e2[k] for k in keys])
    assert _rel(a, b) < TOL[dtype]
