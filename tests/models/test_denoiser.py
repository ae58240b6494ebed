"""CrystalDenoiser: symmetries in float32 and float64, shapes, batch independence, conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from matgen.crystal import CrystalBatch
from matgen.models import ConditionSpec, DenoiserConfig, build_denoiser
from matgen.testing import check_symmetries, random_crystals

TINY = DenoiserConfig(
    hidden=32,
    vectors=8,
    layers=2,
    num_radial=8,
    angular_channels=8,
    cutoff=5.0,
    conditions=[
        ConditionSpec(name="band_gap", mean=1.0, std=1.5),
        ConditionSpec(name="spacegroup", kind="categorical", num_classes=231),
    ],
)


def _randomise(model):
    # zero-initialised condition branches would make conditioning trivially invariant
    with torch.no_grad():
        for p in model.cond.parameters():
            p.normal_(0, 0.3)
    return model


#: Largest symmetry error allowed, relative to the output's size: 50x-250x the largest
#: error measured (float64 ~4e-15, float32 ~2e-6; seeds 0-2). Each block alone:
#: tests/nn/test_block_equivariance.py.
SYMMETRY_TOL = {torch.float32: 1e-4, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fresh_denoiser_passes_all_symmetries(seed, dtype):
    torch.manual_seed(seed)
    model = _randomise(build_denoiser(TINY)).to(dtype)
    g = torch.Generator().manual_seed(seed)
    batch = random_crystals([1, 2, 5, 52], g, dtype=dtype)
    batch.atomic_numbers[::3] = 0  # masked types (de novo) are allowed inputs
    cond = {
        "band_gap": torch.tensor([0.5, float("nan"), 3.0, 1.0], dtype=dtype),
        "spacegroup": torch.tensor([225.0, 12.0, float("nan"), 1.0], dtype=dtype),
    }
    errs = check_symmetries(
        lambda b, t: model(b, t, cond),
        batch,
        generator=g,
        symmetries=("rotation", "reflection", "permutation", "translation", "basis_change"),
    )
    assert set(errs) == {"rotation", "reflection", "permutation", "translation", "basis_change"}
    assert max(errs.values()) < SYMMETRY_TOL[dtype], errs


def test_outputs_shapes_and_tiny_size():
    model = build_denoiser(TINY)
    assert model.num_parameters < 500_000
    batch = random_crystals([1, 3, 7], torch.Generator().manual_seed(0), dtype=torch.float32)
    out = model(batch, torch.rand(3))
    assert out.coord.shape == (11, 3) and out.lattice.shape == (3, 3, 3)
    assert out.type_logits.shape == (11, 94)
    loss = out.coord.sum() + out.lattice.sum() + out.type_logits.sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_each_crystal_is_independent_of_the_rest_of_the_batch():
    torch.manual_seed(0)
    model = build_denoiser(TINY).double()
    batch = random_crystals([3, 1, 6], torch.Generator().manual_seed(1))
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    full = model(batch, t)
    alone = model(batch[2], t[2:])
    assert torch.allclose(full.coord[4:], alone.coord, atol=1e-12)
    assert torch.allclose(full.lattice[2], alone.lattice[0], atol=1e-12)


def test_isolated_atom_without_neighbours_is_finite():
    model = build_denoiser(TINY)
    batch = CrystalBatch(
        atomic_numbers=torch.tensor([26]),
        frac_coords=torch.zeros(1, 3),
        lattice=torch.eye(3).unsqueeze(0) * 20.0,
        num_atoms=torch.tensor([1]),
    )
    out = model(batch, torch.tensor([0.5]))
    assert all(torch.isfinite(x).all() for x in (out.coord, out.lattice, out.type_logits))


def test_conditions_nan_is_null_and_zero_init_adapters_start_neutral():
    torch.manual_seed(0)
    model = build_denoiser(TINY).double()
    batch = random_crystals([2, 3], torch.Generator().manual_seed(2))
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    none = model(batch, t, None)
    nan = model(batch, t, {"band_gap": torch.full((2,), math.nan, dtype=torch.float64)})
    val = model(batch, t, {"band_gap": torch.tensor([0.5, 4.0], dtype=torch.float64)})
    assert torch.allclose(none.coord, nan.coord) and torch.allclose(none.coord, val.coord)
    _randomise(model)
    none = model(batch, t, None)
    nan = model(batch, t, {"band_gap": torch.full((2,), math.nan, dtype=torch.float64)})
    val = model(batch, t, {"band_gap": torch.tensor([0.5, 4.0], dtype=torch.float64)})
    assert torch.allclose(none.coord, nan.coord, atol=1e-12)
    assert not torch.allclose(none.coord, val.coord, atol=1e-6)
    # per-crystal: a NaN in crystal 1 only leaves crystal 0 conditioned
    mixed = model(batch, t, {"band_gap": torch.tensor([0.5, math.nan], dtype=torch.float64)})
    assert torch.allclose(mixed.lattice[0], val.lattice[0], atol=1e-12)
    assert torch.allclose(mixed.lattice[1], none.lattice[1], atol=1e-12)


def test_condition_spec_validation():
    with pytest.raises(ValueError):
        ConditionSpec(name="sg", kind="categorical")
    with pytest.raises(ValueError):
        ConditionSpec(name="x", std=0.0)


def test_geometry_and_outputs_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = build_denoiser(TINY)
    batch = random_crystals([2, 5], torch.Generator().manual_seed(3), dtype=torch.float32)
    t = torch.tensor([0.2, 0.6])
    ref = model(batch, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch, t)
    assert out.coord.dtype == out.lattice.dtype == out.type_logits.dtype == torch.float32
    # bf16 matmuls inside the network, but geometry and output frames are exact
    assert torch.allclose(out.coord, ref.coord, atol=0.1, rtol=0.1)
    assert torch.isfinite(out.lattice).all()


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_every_parameter_gets_a_gradient(task):
    # lets DDP run with find_unused_parameters=False
    from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion

    torch.manual_seed(0)
    model = build_denoiser(TINY)
    batch = random_crystals([2, 5], torch.Generator().manual_seed(4), dtype=torch.float32)
    diff = build_diffusion(DiffusionConfig(), DatasetStats.from_batch(batch))
    loss, _ = diff.loss(model, batch, cond=None, task=task)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
