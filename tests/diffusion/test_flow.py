"""Flow matching (diffusion.objective: flow): paths, targets, the Euler sampler with an oracle
velocity field, anti-annealing, and refusal of consistency distillation."""

from __future__ import annotations

import pytest
import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion import (
    ConsistencyDistillation,
    DatasetStats,
    DiffusionConfig,
    build_diffusion,
    sample,
    sample_fast,
)
from matgen.diffusion._flow import TORUS_SCALE, signed_wrap
from matgen.nn import DenoiserOutput, scatter_mean
from matgen.testing import random_crystals

STATS = DatasetStats(mean_volume_per_atom=15.0, num_atoms_counts={3: 1, 5: 1})


def _flow(**kw):
    return build_diffusion(DiffusionConfig(objective="flow", **kw), STATS)


def test_signed_wrap_is_the_shortest_representative():
    d = torch.tensor([0.49, 0.5, -0.5, 0.51, -0.51, 1.2, -2.7], dtype=torch.float64)
    w = signed_wrap(d)
    assert torch.all(w >= -0.5) and torch.all(w < 0.5)
    assert torch.allclose(torch.remainder(w - d, 1.0) % 1.0, torch.zeros_like(d), atol=1e-12)


def test_noise_targets_are_centred_velocities_of_straight_paths():
    diff = _flow()
    g = torch.Generator().manual_seed(0)
    batch = random_crystals([3, 5, 1], g)
    t = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)
    noisy, coord_t, lat_t, masked = diff.noise(batch, t, "csp", g)
    assert masked is None
    bidx = batch.batch
    assert torch.allclose(scatter_mean(coord_t, bidx, 3), torch.zeros(3, 3, dtype=torch.float64),
                          atol=1e-12)
    # the noisy coordinates are the data moved along the (uncentred) velocity, up to a
    # common shift per crystal
    moved = signed_wrap(noisy.frac_coords - batch.frac_coords)
    resid = moved - t[bidx].unsqueeze(-1) * TORUS_SCALE * coord_t
    resid = signed_wrap(resid - resid[batch.ptr[:-1]][bidx])
    assert resid.abs().max() < 1e-9
    # the lattice lies on the straight line L_0 + t * s * target
    c = diff.lattice.scale(batch.num_atoms, batch.lattice).view(-1, 1, 1)
    back = batch.lattice + t.view(-1, 1, 1) * diff.lattice.rel * c * lat_t
    assert torch.allclose(noisy.lattice, back, atol=1e-9)


def _oracle(data: CrystalBatch):
    """The exact conditional velocity towards ``data`` (what a perfect network learns for a
    dataset of one crystal)."""
    diff = _flow()

    def velocity(batch: CrystalBatch, t, cond=None) -> DenoiserOutput:
        bidx = batch.batch
        tt = t.clamp(min=1e-9)
        coord = signed_wrap(batch.frac_coords - data.frac_coords) / (tt[bidx, None] * TORUS_SCALE)
        c = diff.lattice.scale(batch.num_atoms, batch.lattice).view(-1, 1, 1)
        lat = (batch.lattice - data.lattice) / (tt.view(-1, 1, 1) * diff.lattice.rel * c)
        logits = torch.zeros(batch.frac_coords.shape[0], 94, dtype=batch.lattice.dtype)
        return DenoiserOutput(coord=coord, lattice=lat, type_logits=logits)

    return diff, velocity


@pytest.mark.parametrize("sampler", [sample, sample_fast])
def test_euler_with_the_oracle_velocity_recovers_the_crystal(sampler):
    data = random_crystals([4, 6], torch.Generator().manual_seed(1))
    diff, velocity = _oracle(data)
    out = sampler(velocity, diff, data.num_atoms, data.atomic_numbers, steps=7,
                  generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out.lattice, data.lattice, atol=1e-8)
    d = signed_wrap(out.frac_coords - data.frac_coords)
    shift = d[data.ptr[:-1]][data.batch]  # a common translation per crystal is allowed
    assert signed_wrap(d - shift).abs().max() < 1e-8


def test_anti_annealing_still_lands_on_the_oracle_crystal_and_changes_the_path():
    data = random_crystals([5], torch.Generator().manual_seed(3))
    _, velocity = _oracle(data)
    plain, steep = _flow(), _flow(flow_slope=5.0)
    mids = {}
    for name, diff in (("plain", plain), ("steep", steep)):
        seen = []
        out = sample_fast(velocity, diff, data.num_atoms, data.atomic_numbers, steps=20,
                          generator=torch.Generator().manual_seed(4),
                          callback=lambda i, n, b, seen=seen: seen.append(b.frac_coords.clone()))
        mids[name] = seen[9]
        d = signed_wrap(out.frac_coords - data.frac_coords)
        assert signed_wrap(d - d[0]).abs().max() < 1e-8  # steps are cut at the end point
    assert not torch.allclose(mids["plain"], mids["steep"])


def test_a_steep_step_never_passes_the_end_point_it_points_at():
    """Slope 10 with 5 steps asks for steps up to 2.8x the remaining time; each step is cut so
    that it lands on f_t - t v at most, never beyond it (the uncut Euler step would put the
    oracle's atoms up to 1.8 path lengths past the crystal)."""
    flow = _flow(flow_slope=10.0).coords
    f = torch.tensor([[0.3, 0.3, 0.3]], dtype=torch.float64)
    v = torch.full((1, 3), 0.2 / TORUS_SCALE, dtype=torch.float64)  # points at 0.3 - t * 0.2
    for t, s in ((0.4, 0.2), (0.2, 0.0), (1.0, 0.8)):
        t_, s_ = torch.tensor([t], dtype=torch.float64), torch.tensor([s], dtype=torch.float64)
        moved = 0.3 - flow.step(f, v, t_, s_, slope=10.0)[0, 0].item()
        want = min((t - s) * (1 + 10 * (1 - t)), t) * 0.2
        assert moved == pytest.approx(want, abs=1e-12)
    data = random_crystals([4, 6], torch.Generator().manual_seed(7))
    _, velocity = _oracle(data)
    for sampler in (sample, sample_fast):
        out = sampler(velocity, _flow(flow_slope=10.0), data.num_atoms, data.atomic_numbers,
                      steps=5, generator=torch.Generator().manual_seed(8))
        d = signed_wrap(out.frac_coords - data.frac_coords)
        assert signed_wrap(d - d[data.ptr[:-1]][data.batch]).abs().max() < 1e-8


def test_loss_runs_and_consistency_distillation_refuses_a_flow_teacher():
    from matgen.models import DenoiserConfig, build_denoiser

    diff = _flow()
    model = build_denoiser(DenoiserConfig(arch="dense", hidden=16, layers=1, num_freqs=2))
    batch = random_crystals([3, 5], torch.Generator().manual_seed(5), dtype=torch.float32)
    for task in ("csp", "gen"):
        loss, logs = diff.loss(model, batch, task=task, generator=torch.Generator().manual_seed(6))
        assert torch.isfinite(loss) and logs["loss_coord"] > 0 and logs["loss_lattice"] > 0
    with pytest.raises(ValueError, match="score-matching teacher"):
        ConsistencyDistillation(diff, model)


def test_t_power_moves_the_loss_times_towards_the_data():
    """``t_power`` > 1 draws more loss times near t = 0 (the data); 1 leaves them uniform."""
    seen = {}

    def spy(noisy, t, cond):
        seen["t"] = t.clone()
        n = noisy.frac_coords.shape[0]
        return DenoiserOutput(coord=torch.zeros(n, 3, dtype=t.dtype),
                              lattice=torch.zeros(t.shape[0], 3, 3, dtype=t.dtype),
                              type_logits=torch.zeros(n, 94, dtype=t.dtype))

    batch = random_crystals([2] * 4000, torch.Generator().manual_seed(1))
    means = {}
    for p in (1.0, 3.0):
        _flow(t_power=p).loss(spy, batch, task="csp", generator=torch.Generator().manual_seed(0))
        t = seen["t"]
        assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
        means[p] = float(t.mean())
    # E[u] = 1/2, E[u^3] = 1/4 (4,000 draws: standard error < 0.005)
    assert abs(means[1.0] - 0.5) < 0.02 and abs(means[3.0] - 0.25) < 0.02
