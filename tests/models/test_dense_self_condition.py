"""DenseDenoiser with self-conditioning (model.self_condition): the clean estimate keeps the exact
symmetries when it is transformed with the crystal, its branches start at zero (weights of a
model without them load unchanged), weight 0 is the same as no estimate, size groups split it."""

from __future__ import annotations

import pytest
import torch

from matgen.models import DenoiserConfig, build_denoiser
from matgen.models._checkpoint import load_pretrained_weights
from matgen.nn import CleanEstimate
from matgen.testing import check_symmetries, random_crystals

TINY = DenoiserConfig(arch="dense", hidden=32, layers=2, num_freqs=4, self_condition=True)


def _model(seed=0, cfg=TINY):
    torch.manual_seed(seed)
    model = build_denoiser(cfg).double()
    with torch.no_grad():  # the zero-initialised branches would hide bugs
        for p in (*model.sc_edge.parameters(), *model.sc_cell.parameters()):
            p.normal_(0, 0.3)
    return model


def _estimate(batch, weight):
    """An estimate that moves with the crystal under every exact symmetry: the coordinates
    themselves (translated and permuted with them) and a scaled copy of the lattice (rotated)."""
    return CleanEstimate(batch.frac_coords, 1.1 * batch.lattice, weight)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_symmetries_hold_with_the_estimate_transformed_along(seed):
    model = _model(seed)
    g = torch.Generator().manual_seed(seed)
    batch = random_crystals([1, 3, 6, 20], g)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    errs = check_symmetries(lambda b, t: model(b, t, prev=_estimate(b, w)), batch, generator=g,
                            symmetries=("rotation", "reflection", "permutation", "translation"))
    assert max(errs.values()) < 1e-10, errs
    t = torch.full((4,), 0.5, dtype=torch.float64)
    with_est, without = model(batch, t, prev=_estimate(batch, w)), model(batch, t)
    assert not torch.allclose(with_est.coord, without.coord)  # the estimate is really used


def test_weight_zero_is_no_estimate_and_fresh_branches_change_nothing():
    model = _model(2)
    batch = random_crystals([4, 7], torch.Generator().manual_seed(2))
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    off = model(batch, t, prev=_estimate(batch, torch.zeros(2, dtype=torch.float64)))
    none = model(batch, t)
    assert torch.allclose(off.coord, none.coord, atol=1e-12)
    assert torch.allclose(off.lattice, none.lattice, atol=1e-12)
    fresh = build_denoiser(TINY).double()  # zero-initialised branches
    a = fresh(batch, t, prev=_estimate(batch, torch.ones(2, dtype=torch.float64)))
    b = fresh(batch, t)
    assert torch.allclose(a.coord, b.coord, atol=1e-12)


def test_weights_without_self_conditioning_load_and_give_the_same_outputs(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    plain = build_denoiser(TINY.model_copy(update={"self_condition": False})).double()
    save_file(plain.state_dict(), str(tmp_path / "model.safetensors"))
    sc = build_denoiser(TINY).double()
    missing = load_pretrained_weights(sc, tmp_path / "model.safetensors")
    assert missing and all(n.startswith(("sc_edge.", "sc_cell.")) for n in missing)
    batch = random_crystals([5], torch.Generator().manual_seed(3))
    t = torch.tensor([0.4], dtype=torch.float64)
    est = _estimate(batch, torch.ones(1, dtype=torch.float64))
    assert torch.allclose(sc(batch, t, prev=est).coord, plain(batch, t).coord, atol=1e-12)


def test_size_groups_split_the_estimate_and_a_plain_model_refuses_one():
    one = _model(4, TINY.model_copy(update={"cpu_size_groups": 1}))
    grouped = build_denoiser(TINY.model_copy(update={"cpu_size_groups": 3})).double()
    grouped.load_state_dict(one.state_dict())
    batch = random_crystals([2, 9, 1, 5, 13, 3], torch.Generator().manual_seed(4))
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    a, b = one(batch, t, prev=_estimate(batch, w)), grouped(batch, t, prev=_estimate(batch, w))
    for name in ("coord", "lattice", "type_logits"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-10), name
    plain = build_denoiser(TINY.model_copy(update={"self_condition": False})).double()
    with pytest.raises(ValueError, match="without self_condition"):
        plain(batch, t, prev=_estimate(batch, w))


def test_self_condition_needs_the_dense_arch():
    with pytest.raises(ValueError, match="arch: dense"):
        DenoiserConfig(arch="radius", self_condition=True)
