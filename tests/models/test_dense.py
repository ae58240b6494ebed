"""DenseDenoiser (arch: dense): exact symmetries, stated basis dependence, Niggli canonical cell,
padding that does not leak, conditioning."""

from __future__ import annotations

import pytest
import torch

from matgen.crystal import CrystalBatch
from matgen.models import ConditionSpec, DenoiserConfig, DenseDenoiser, build_denoiser
from matgen.testing import check_symmetries, random_crystals
from matgen.testing.symmetry import random_unimodular

TINY = DenoiserConfig(
    arch="dense",
    hidden=32,
    layers=2,
    num_freqs=4,
    conditions=[
        ConditionSpec(name="band_gap", mean=1.0, std=1.5),
        ConditionSpec(name="spacegroup", kind="categorical", num_classes=231),
    ],
)


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = build_denoiser(TINY).to(dtype)
    with torch.no_grad():  # zero-initialised condition branches would hide conditioning bugs
        for p in model.cond.parameters():
            p.normal_(0, 0.3)
    return model


def _crystal(batch: CrystalBatch, i: int) -> CrystalBatch:
    lo, hi = int(batch.ptr[i]), int(batch.ptr[i + 1])
    return CrystalBatch(atomic_numbers=batch.atomic_numbers[lo:hi],
                        frac_coords=batch.frac_coords[lo:hi], lattice=batch.lattice[i : i + 1],
                        num_atoms=batch.num_atoms[i : i + 1])


def test_build_picks_the_dense_class_and_is_small():
    model = build_denoiser(TINY)
    assert isinstance(model, DenseDenoiser)
    assert 0 < model.num_parameters < 200_000


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_symmetries_float64_and_basis_dependence_is_real(seed):
    model = _model(seed)
    g = torch.Generator().manual_seed(seed)
    batch = random_crystals([1, 2, 5, 20], g)
    batch.atomic_numbers[::3] = 0  # masked types (de novo) are allowed inputs
    cond = {
        "band_gap": torch.tensor([0.5, float("nan"), 3.0, 1.0], dtype=torch.float64),
        "spacegroup": torch.tensor([225.0, 12.0, float("nan"), 1.0], dtype=torch.float64),
    }
    errs = check_symmetries(
        lambda b, t: model(b, t, cond), batch, generator=g,
        symmetries=("rotation", "reflection", "permutation", "translation", "basis_change"),
    )
    exact = {k: v for k, v in errs.items() if k != "basis_change"}
    assert max(exact.values()) < 1e-10, errs
    # stated in the module: the dense network depends on the lattice basis (hence Niggli cells)
    assert errs["basis_change"] > 1e-4, errs


def test_niggli_reduction_makes_basis_changed_copies_agree():
    from pymatgen.core import Lattice, Structure

    model = _model(2)
    g = torch.Generator().manual_seed(3)
    base = random_crystals([6], g)
    u = random_unimodular(g)
    lat2 = u @ base.lattice[0]
    f2 = torch.remainder(base.frac_coords @ torch.linalg.inv(u), 1.0)

    def reduced(lat, frac):
        s = Structure(Lattice(lat.numpy()), base.atomic_numbers.tolist(), frac.numpy())
        r = s.get_reduced_structure("niggli")
        return CrystalBatch(atomic_numbers=torch.tensor(r.atomic_numbers),
                            frac_coords=torch.tensor(r.frac_coords % 1.0),
                            lattice=torch.tensor(r.lattice.matrix).unsqueeze(0),
                            num_atoms=torch.tensor([len(r)]))

    a, b = reduced(base.lattice[0], base.frac_coords), reduced(lat2, f2)
    gram_a = a.lattice[0] @ a.lattice[0].T
    gram_b = b.lattice[0] @ b.lattice[0].T
    assert torch.allclose(gram_a, gram_b, atol=1e-8)  # one canonical cell up to rotation
    t = torch.tensor([0.4], dtype=torch.float64)
    oa, ob = model(a, t), model(b, t)
    assert torch.allclose(oa.coord, ob.coord, atol=1e-8)
    assert torch.allclose(oa.type_logits, ob.type_logits, atol=1e-8)
    # lattice output rotates with the cell: compare in the cell's own basis
    la = oa.lattice[0] @ torch.linalg.inv(a.lattice[0])
    lb = ob.lattice[0] @ torch.linalg.inv(b.lattice[0])
    assert torch.allclose(la, lb, atol=1e-8)


def test_padding_does_not_leak_between_crystals():
    model = _model(4)
    g = torch.Generator().manual_seed(4)
    batch = random_crystals([3, 11, 1], g)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    full = model(batch, t)
    for i in range(3):
        one = model(_crystal(batch, i), t[i : i + 1])
        lo, hi = int(batch.ptr[i]), int(batch.ptr[i + 1])
        assert torch.allclose(one.coord, full.coord[lo:hi], atol=1e-10)
        assert torch.allclose(one.lattice, full.lattice[i : i + 1], atol=1e-10)


def test_fixed_padding_gives_the_same_outputs():
    model = _model(5)
    padded = build_denoiser(TINY.model_copy(update={"pad_atoms": 24})).double()
    padded.load_state_dict(model.state_dict())
    batch = random_crystals([2, 7], torch.Generator().manual_seed(5))
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    a, b = model(batch, t), padded(batch, t)
    assert torch.allclose(a.coord, b.coord, atol=1e-10)
    assert torch.allclose(a.lattice, b.lattice, atol=1e-10)


def test_conditions_change_the_output_and_every_parameter_gets_a_gradient():
    model = _model(6, torch.float32)
    batch = random_crystals([4, 5], torch.Generator().manual_seed(6), dtype=torch.float32)
    t = torch.tensor([0.3, 0.7])
    out0 = model(batch, t)
    out1 = model(batch, t, {"band_gap": torch.tensor([2.0, 2.0])})
    assert not torch.allclose(out0.coord, out1.coord)
    out = model(batch, t, {"band_gap": torch.tensor([2.0, float("nan")]),
                           "spacegroup": torch.tensor([5.0, 7.0])})
    (out.coord.sum() + out.lattice.sum() + out.type_logits.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_size_groups_give_the_same_outputs_and_gradients():
    # on a CPU the layout comes from cpu_size_groups: one padded batch against 3 groups
    model = build_denoiser(TINY.model_copy(update={"cpu_size_groups": 1})).double()
    model.load_state_dict(_model(7).state_dict())
    grouped = build_denoiser(TINY.model_copy(update={"cpu_size_groups": 3})).double()
    grouped.load_state_dict(model.state_dict())
    batch = random_crystals([2, 9, 1, 5, 5, 13, 3, 7], torch.Generator().manual_seed(7))
    t = torch.linspace(0.1, 0.9, 8, dtype=torch.float64)
    cond = {"band_gap": torch.linspace(0.0, 3.0, 8, dtype=torch.float64)}
    a, b = model(batch, t, cond), grouped(batch, t, cond)
    for name in ("coord", "lattice", "type_logits"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-10), name
    (b.coord.sum() + b.lattice.sum()).backward()
    (a.coord.sum() + a.lattice.sum()).backward()
    for (n, p), q in zip(model.named_parameters(), grouped.parameters(), strict=True):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-9), n


def test_the_layout_follows_the_device(monkeypatch):
    """cpu_size_groups on a CPU, size_groups elsewhere (a batch whose lattice lives on the meta
    device stands in for a GPU batch: the plan is made before any arithmetic)."""
    from types import SimpleNamespace

    import matgen.models._dense as dense

    seen = []

    def plan(num_atoms, groups, pad=0):
        seen.append(groups)
        raise StopIteration

    monkeypatch.setattr(dense, "size_plan", plan)
    model = build_denoiser(TINY.model_copy(update={"size_groups": 2, "cpu_size_groups": 5}))
    na = torch.tensor([3, 4])
    for dev in ("cpu", "meta"):
        batch = SimpleNamespace(num_atoms=na, lattice=torch.zeros(2, 3, 3, device=dev))
        with pytest.raises(StopIteration):
            model(batch, torch.tensor([0.3, 0.6]))
    assert seen == [5, 2]
