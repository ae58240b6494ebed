"""Noise processes: closed-form marginals, score = autograd of the log-density, priors."""

from __future__ import annotations

import math

import pytest
import torch

from matgen.diffusion import LatticeProcess, MaskedTypeProcess, TorusProcess, wrap01
from matgen.testing import random_rotation


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.2, 0.5, 1.0])
def test_torus_score_is_autograd_of_log_density(sigma):
    proc = TorusProcess(wrap_images=6)
    d = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64).requires_grad_(True)
    if sigma < 0.01:  # keep inside the support where the density is representable
        d = (torch.linspace(-6, 6, 101, dtype=torch.float64) * sigma).requires_grad_(True)
    s = torch.full_like(d, sigma)
    (grad,) = torch.autograd.grad(proc.log_density(d, s).sum(), d)
    assert torch.allclose(proc.score(d.detach(), s), grad, rtol=1e-9, atol=1e-9 / sigma)


def test_torus_score_is_periodic_and_odd():
    proc = TorusProcess()
    d = torch.rand(50, dtype=torch.float64) - 0.5
    s = torch.full_like(d, 0.3)
    assert torch.allclose(proc.score(d, s), proc.score(d + 3.0, s), atol=1e-12)
    assert torch.allclose(proc.score(-d, s), -proc.score(d, s), atol=1e-12)


@pytest.mark.parametrize("t", [0.3, 0.8, 1.0])
def test_torus_marginal_matches_wrapped_normal(t):
    proc = TorusProcess()
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n // 3, 3), 0.7, dtype=torch.float64)
    ft, _ = proc.add_noise(x0, torch.full((n // 3,), t, dtype=torch.float64), g)
    samples = ft.flatten()
    assert samples.min() >= 0 and samples.max() < 1
    bins = 20
    hist = torch.histc(samples, bins=bins, min=0.0, max=1.0) / samples.numel()
    edges = torch.linspace(0, 1, 2001, dtype=torch.float64)
    mid = (edges[1:] + edges[:-1]) / 2
    sig = proc.sigma(torch.tensor(t, dtype=torch.float64))
    dens = proc.log_density(mid - 0.7, sig.expand_as(mid)).exp() / 2000
    expected = dens.reshape(bins, -1).sum(-1)
    se = torch.sqrt(expected * (1 - expected) / samples.numel())
    assert torch.all((hist - expected).abs() < 5 * se + 1e-4)


@pytest.mark.parametrize("t", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_normalised_torus_target_has_unit_second_moment(t):
    proc = TorusProcess()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(40_000, 3, generator=g, dtype=torch.float64)
    _, target = proc.add_noise(x0, torch.full((40_000,), t, dtype=torch.float64), g)
    assert abs(float(target.pow(2).mean()) - 1.0) < 0.03


def test_torus_prior_in_range():
    proc = TorusProcess()
    f = proc.prior(1000, torch.empty(0), torch.Generator().manual_seed(0))
    assert f.shape == (1000, 3) and f.min() >= 0 and f.max() < 1
    assert abs(float(f.mean()) - 0.5) < 0.03
    assert float(wrap01(torch.tensor([-1e-18]))[0]) == 0.0


def test_lattice_marginal_matches_closed_form():
    proc = LatticeProcess(mean_volume_per_atom=12.0, lattice_sigma=0.2)
    g = torch.Generator().manual_seed(2)
    l0 = torch.tensor([[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [0.5, 0.3, 7.0]], dtype=torch.float64)
    m = 100_000
    t = torch.full((m,), 0.6, dtype=torch.float64)
    na = torch.full((m,), 6, dtype=torch.long)
    lt, target = proc.add_noise(l0.expand(m, 3, 3), t, na, g)
    ab = proc.alpha_bar(torch.tensor(0.6, dtype=torch.float64))
    c = (6 * 12.0) ** (1 / 3)
    mean = ab.sqrt() * l0 + (1 - ab.sqrt()) * c * LatticeProcess.polar_rotation(l0[None])[0]
    std = (1 - ab).sqrt() * 0.2 * c
    assert torch.allclose(lt.mean(0), mean, atol=5 * std / math.sqrt(m))
    assert torch.allclose(lt.std(0), std.expand(3, 3), rtol=0.02)
    eps = target + proc.skip(lt, t, na)
    assert torch.allclose(lt, mean + std * eps, atol=1e-10)


def test_lattice_prior_is_sane_cells_at_mean_density():
    proc = LatticeProcess(mean_volume_per_atom=15.0, lattice_sigma=0.2)
    na = torch.randint(1, 53, (5000,), generator=torch.Generator().manual_seed(3))
    lat = proc.prior(na, torch.empty(0), torch.Generator().manual_seed(3))
    vpa = torch.linalg.det(lat) / na
    assert (vpa > 0.2 * 15.0).float().mean() > 0.99
    assert abs(float(vpa.median()) - 15.0) < 0.1 * 15.0
    # at t = 1 the forward process reaches the prior's spread around the cube
    t1 = torch.ones(5000, dtype=torch.float64)
    l0 = torch.diag(torch.tensor([3.0, 4.0, 9.0])).expand(5000, 3, 3)
    lt, _ = proc.add_noise(l0, t1, na, torch.Generator().manual_seed(4))
    c = (na * 15.0) ** (1 / 3)
    x = (lt - c.view(-1, 1, 1) * torch.eye(3)) / (0.2 * c.view(-1, 1, 1))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_lattice_process_and_skip_are_rotation_equivariant():
    proc = LatticeProcess(mean_volume_per_atom=15.0)
    g = torch.Generator().manual_seed(5)
    lat = torch.eye(3) * 4 + torch.randn(4, 3, 3, generator=g)
    r = random_rotation(g)
    na = torch.tensor([3, 4, 5, 6])
    t = torch.rand(4, generator=g)
    q = LatticeProcess.polar_rotation(lat)
    assert torch.allclose(LatticeProcess.polar_rotation(lat @ r.T), q @ r.T, atol=1e-12)
    assert torch.allclose(proc.skip(lat @ r.T, t, na), proc.skip(lat, t, na) @ r.T, atol=1e-12)


def test_masked_types_marginal_and_reveal_rate():
    proc = MaskedTypeProcess()
    g = torch.Generator().manual_seed(6)
    z0 = torch.randint(1, 95, (100_000,), generator=g)
    t = torch.full((100_000,), 0.3, dtype=torch.float64)
    zt, masked = proc.add_noise(z0, t, g)
    assert abs(float(masked.double().mean()) - 0.3) < 0.01
    assert torch.equal(zt[~masked], z0[~masked]) and (zt[masked] == 0).all()
    mask = torch.zeros(94, dtype=torch.bool)
    mask[[2, 25, 7]] = True  # Li, Fe, O
    logits = torch.randn(100_000, 94, generator=g)
    zs = proc.step(zt, logits, t, torch.full_like(t, 0.1), g, type_mask=mask)
    revealed = (zt == 0) & (zs != 0)
    assert abs(float(revealed.double().sum() / (zt == 0).sum()) - 2 / 3) < 0.01
    assert set(zs[revealed].unique().tolist()) <= {3, 26, 8}
    assert torch.equal(zs[zt != 0], zt[zt != 0])
    zf = proc.step(zs, logits, torch.full_like(t, 0.1), torch.zeros_like(t), g, type_mask=mask)
    assert (zf != 0).all()
