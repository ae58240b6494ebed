"""The tensor relaxation engine (whole state on the MLIP's device, batched neighbour lists):
same edges as matscipy, same Frechet cell forces as ASE, same relaxation as the structure path
and as ASE FIRE + FrechetCellFilter, per-structure failures."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

pytest.importorskip("sevenn")


@pytest.fixture(scope="module")
def sevennet():
    from matgen.surrogates import SevenNetMLIP

    return SevenNetMLIP(model="7net-0", device="cpu")  # the fast checkpoint: same code path


@pytest.mark.parametrize("chunk", [1 << 22, 37])
def test_batched_neighbour_list_matches_matscipy(perturbed_pair, triclinic, one_atom, chunk,
                                                 monkeypatch):
    from pymatgen.core import Structure

    from matgen.surrogates import _neighbours
    from matgen.surrogates._neighbours import batched_neighbour_list
    from matgen.surrogates._neighbours import matscipy_neighbour_list as _neighbour_list

    monkeypatch.setattr(_neighbours, "NEIGHBOUR_CHUNK", chunk)  # many chunks: same edges

    t = triclinic
    outside = Structure(t.lattice, t.species, t.frac_coords + [[1.3, -0.6, 2.1]] * len(t))
    structures = [*perturbed_pair, triclinic, one_atom, outside]
    ref, start = [], 0
    for s in structures:
        src, dst, image = _neighbour_list(np.array(s.lattice.matrix), np.array(s.cart_coords),
                                          5.0)
        ref += list(zip((src + start).tolist(), (dst + start).tolist(),
                        map(tuple, image.round().tolist()), strict=True))
        start += len(s)
    owner = torch.repeat_interleave(torch.arange(len(structures)),
                                    torch.tensor([len(s) for s in structures]))
    src, dst, image = batched_neighbour_list(
        torch.tensor(np.stack([s.lattice.matrix for s in structures])),
        torch.tensor(np.concatenate([s.cart_coords for s in structures])), owner, 5.0)
    got = list(zip(src.tolist(), dst.tolist(), map(tuple, image.round().tolist()), strict=True))
    assert sorted(got) == sorted(ref)


def test_frechet_cell_forces_match_ase():
    from itertools import product

    from scipy.linalg import expm, expm_frechet

    from matgen.surrogates._relax import frechet_cell_forces

    rng = np.random.default_rng(0)
    logs, virials, want = [], [], []
    for _ in range(3):
        log_f, virial = rng.normal(0, 0.2, (3, 3)), rng.normal(0, 1, (3, 3))
        u = virial @ np.linalg.inv(expm(log_f).T)
        g = np.zeros((3, 3))
        for mu, nu in product(range(3), repeat=2):  # ASE's FrechetCellFilter.get_forces
            d = np.zeros((3, 3))
            d[mu, nu] = 1.0
            g[mu, nu] = np.sum(expm_frechet(log_f, d, compute_expm=False) * u)
        logs.append(log_f)
        virials.append(virial)
        want.append(g)
    log_t = torch.tensor(np.array(logs))
    got = frechet_cell_forces(torch.tensor(np.array(virials)), log_t,
                              torch.linalg.matrix_exp(log_t))
    np.testing.assert_allclose(got.numpy(), np.array(want), atol=1e-12)


def test_tensor_engine_matches_structure_engine(sevennet, perturbed_pair):
    """The same FIRE trajectory: after 12 steps both engines stand at the same structure."""
    from matgen.surrogates import RelaxConfig, relax

    cfg = RelaxConfig(fmax=1e-4, max_steps=12, batch_size=1, engine="tensor")  # 2 through 1 slot
    tensor = relax(perturbed_pair, sevennet, cfg, ids=["a", "b"])
    ref = relax(perturbed_pair, sevennet, dataclasses.replace(cfg, engine="structures"))
    start = sevennet.predict(perturbed_pair, compute_stress=False).energy_per_atom
    assert [r.id for r in tensor] == ["a", "b"]
    for a, b, e0 in zip(tensor, ref, start, strict=True):
        assert a.error is None and a.steps == b.steps == 12
        assert a.energy_per_atom < float(e0) - 1e-3  # it moved downhill
        assert a.energy_per_atom == pytest.approx(b.energy_per_atom, abs=2e-5)
        assert a.max_force == pytest.approx(b.max_force, abs=2e-3)
        assert a.structure.volume == pytest.approx(b.structure.volume, rel=1e-4)
        assert a.structure.species == b.structure.species


def test_single_point_equals_predict(sevennet, perturbed_pair):
    from matgen.surrogates import RelaxConfig, relax

    res = relax(perturbed_pair, sevennet, RelaxConfig(max_steps=0, engine="tensor"))
    out = sevennet.predict(perturbed_pair)
    for k, r in enumerate(res):
        assert r.steps == 0 and not r.converged
        assert r.energy_per_atom == pytest.approx(float(out.energy_per_atom[k]), abs=1e-6)
        assert r.structure == perturbed_pair[k]


def test_tensor_engine_isolates_bad_structures(sevennet, perturbed_pair):
    from pymatgen.core import Lattice, Structure

    from matgen.surrogates import RelaxConfig, relax

    isolated = Structure(Lattice.cubic(15.0), ["Si", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    unknown = Structure(Lattice.cubic(3.0), ["Es"], [[0, 0, 0]])
    cfg = RelaxConfig(fmax=0.1, max_steps=100, batch_size=2, engine="tensor")
    res = relax([perturbed_pair[0], isolated, unknown, perturbed_pair[1]], sevennet, cfg)
    assert res[0].error is None and res[3].error is None
    assert res[0].converged and res[3].converged
    assert "graph" in res[1].error and "isolated" in res[1].error
    assert "no type for Es" in res[2].error and math.isnan(res[2].energy_per_atom)
    alone = relax(perturbed_pair, sevennet, cfg)
    assert res[0].energy_per_atom == pytest.approx(alone[0].energy_per_atom, abs=1e-5)
    assert res[3].energy_per_atom == pytest.approx(alone[1].energy_per_atom, abs=1e-5)


def test_engine_choice():
    from matgen.surrogates import RelaxConfig, relax
    from matgen.surrogates._relax import _use_tensor_engine

    class NoTensor:
        name = "fake"

    class Tensor(NoTensor):
        device = torch.device("cpu")

        def forward_graph(self):  # pragma: no cover - never called here
            raise AssertionError

    class TensorGPU(Tensor):
        device = torch.device("cuda")

    assert not _use_tensor_engine(NoTensor(), RelaxConfig())
    assert not _use_tensor_engine(Tensor(), RelaxConfig())  # auto: the structure path on CPU
    assert _use_tensor_engine(TensorGPU(), RelaxConfig())
    assert _use_tensor_engine(Tensor(), RelaxConfig(engine="tensor"))
    assert not _use_tensor_engine(TensorGPU(), RelaxConfig(engine="structures"))
    with pytest.raises(ValueError, match="no tensor engine"):
        relax([], NoTensor(), RelaxConfig(engine="tensor"))
    with pytest.raises(ValueError, match="engine must be"):
        relax([], NoTensor(), RelaxConfig(engine="gpu"))


@pytest.mark.slow
def test_tensor_engine_matches_ase_on_mp20(sevennet, datasets_dir):
    """Three MP-20 test cells, rattled and strained: relaxed energies within 5 meV/atom of
    SevenNet's ASE calculator under ASE FIRE + FrechetCellFilter (the acceptance rule)."""
    import sys
    from pathlib import Path

    from matgen.surrogates import RelaxConfig, relax, relax_ase

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from surrogates_relax import perturbed

    structures, ids = perturbed(3, 0, 0.05, 0.03, datasets_dir, max_atoms=12)
    cfg = RelaxConfig(fmax=0.05, max_steps=300, engine="tensor")
    ours = relax(structures, sevennet, cfg, ids=ids)
    ref = relax_ase(structures, sevennet, cfg, ids=ids)
    for a, b in zip(ours, ref, strict=True):
        assert a.error is None and a.converged and b.converged
        assert abs(a.energy_per_atom - b.energy_per_atom) < 0.005


def test_non_finite_forces_fail_one_structure(sevennet, perturbed_pair, monkeypatch):
    from matgen.surrogates import RelaxConfig, relax

    forward = sevennet.forward_graph

    def nan_for_second(z, pos, cell, owner, edges=None, compute_stress=True):
        e, f, s = forward(z, pos, cell, owner, edges)
        f = f.clone()
        f[owner == 1] = float("nan")  # the second structure of the batch
        return e, f, s

    monkeypatch.setattr(sevennet, "forward_graph", nan_for_second)
    res = relax(perturbed_pair, sevennet, RelaxConfig(max_steps=3, engine="tensor"))
    assert res[0].error is None and res[0].steps == 3
    assert "non-finite" in res[1].error and math.isnan(res[1].energy_per_atom)
