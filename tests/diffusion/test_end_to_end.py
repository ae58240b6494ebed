"""Loss -> optimiser -> sampler on a tiny denoiser: the path the training loop builds on."""

from __future__ import annotations

import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion, sample, sample_fast
from matgen.models import DenoiserConfig, build_denoiser

TINY = DenoiserConfig(hidden=32, vectors=8, layers=2, num_radial=8, angular_channels=8, cutoff=4.0)


def _data(rock_salt, one_atom, triclinic):
    return CrystalBatch.from_structures([rock_salt, one_atom, triclinic], ids=["a", "b", "c"])


def test_loss_backward_and_training_reduces_loss(rock_salt, one_atom, triclinic):
    torch.manual_seed(0)
    batch = _data(rock_salt, one_atom, triclinic)
    diff = build_diffusion(DiffusionConfig(), DatasetStats.from_batch(batch))
    model = build_denoiser(TINY)
    opt = torch.optim.Adam(model.parameters(), 3e-3)

    def fixed_loss(task):  # same times and noise every call
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(diff.loss(model, batch, task=task, generator=g)[1]["loss"] for _ in range(4))

    before = {task: fixed_loss(task) for task in ("csp", "gen")}
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        for task in ("csp", "gen"):
            loss, logs = diff.loss(model, batch, task=task, generator=g)
            assert torch.isfinite(loss) and loss.dim() == 0
            assert set(logs) == {"loss", "loss_coord", "loss_lattice", "loss_type"}
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert fixed_loss("csp") < before["csp"]
    assert fixed_loss("gen") < 0.8 * before["gen"]  # type cross-entropy drops fast
    # CSP never has a type loss
    _, logs = diff.loss(model, batch, task="csp", generator=g)
    assert logs["loss_type"] == 0.0


def test_sample_csp_and_de_novo_shapes_and_reproducible(rock_salt, one_atom, triclinic):
    torch.manual_seed(0)
    batch = _data(rock_salt, one_atom, triclinic)
    diff = build_diffusion(DiffusionConfig(), DatasetStats.from_batch(batch))
    model = build_denoiser(TINY).eval()
    na = torch.tensor([1, 4, 7])
    zs = torch.randint(1, 60, (12,))
    a = sample(model, diff, na, zs, steps=8, generator=torch.Generator().manual_seed(3))
    b = sample(model, diff, na, zs, steps=8, generator=torch.Generator().manual_seed(3))
    c = sample(model, diff, na, zs, steps=8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.frac_coords, b.frac_coords) and torch.equal(a.lattice, b.lattice)
    assert not torch.equal(a.frac_coords, c.frac_coords)
    assert torch.equal(a.atomic_numbers, zs) and torch.equal(a.num_atoms, na)
    assert a.frac_coords.min() >= 0 and a.frac_coords.max() < 1
    assert torch.isfinite(a.lattice).all()
    d = sample(model, diff, na, None, steps=8, generator=torch.Generator().manual_seed(3))
    assert d.atomic_numbers.min() >= 1 and d.atomic_numbers.max() <= 94
    e = sample_fast(model, diff, na, None, steps=5, generator=torch.Generator().manual_seed(3))
    assert e.atomic_numbers.min() >= 1 and len(e.to_structures()) == 3
