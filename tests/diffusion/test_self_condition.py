"""Self-conditioning (diffusion.self_condition): the clean estimate is the flow path's end point,
training gives the denoiser its own estimate on about the configured share of batches (after a
pass without gradients), the sampler hands each step's estimate to the next step (doubled under
guidance), and the configs refuse the combinations that cannot work."""

from __future__ import annotations

import pytest
import torch

from matgen.crystal import CrystalBatch
from matgen.diffusion import DatasetStats, DiffusionConfig, build_diffusion, sample_fast
from matgen.diffusion._flow import TORUS_SCALE, signed_wrap
from matgen.nn import CleanEstimate, DenoiserOutput
from matgen.testing import random_crystals

STATS = DatasetStats(mean_volume_per_atom=15.0, num_atoms_counts={3: 1, 5: 1})


def _flow(p=0.5):
    return build_diffusion(DiffusionConfig(objective="flow", self_condition=p), STATS)


def _same_crystal(f, data):
    d = signed_wrap(f - data.frac_coords)
    return signed_wrap(d - d[data.ptr[:-1]][data.batch]).abs().max() < 1e-8  # up to a translation


class Oracle:
    """The exact velocity towards ``data`` (a perfect network for a one-crystal dataset) that
    records the estimate it was given at every call."""

    def __init__(self, diff, data):
        self.diff, self.data, self.seen = diff, data, []

    def __call__(self, batch: CrystalBatch, t, cond=None, prev=None) -> DenoiserOutput:
        self.seen.append((prev, torch.is_grad_enabled(), batch.num_crystals))
        data, n = self.data, self.data.num_crystals
        reps = batch.num_crystals // n
        bidx, tt = batch.batch, t.clamp(min=1e-9)
        target_f = data.frac_coords.repeat(reps, 1)
        coord = signed_wrap(batch.frac_coords - target_f) / (tt[bidx, None] * TORUS_SCALE)
        c = self.diff.lattice.scale(batch.num_atoms, batch.lattice).view(-1, 1, 1)
        lat = (batch.lattice - data.lattice.repeat(reps, 1, 1)) / (
            tt.view(-1, 1, 1) * self.diff.lattice.rel * c)
        logits = torch.zeros(batch.frac_coords.shape[0], 94, dtype=batch.lattice.dtype)
        return DenoiserOutput(coord=coord, lattice=lat, type_logits=logits)


def test_the_estimate_of_the_exact_velocity_is_the_crystal():
    diff = _flow()
    g = torch.Generator().manual_seed(0)
    data = random_crystals([3, 5, 1], g)
    t = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)
    noisy, coord_t, lat_t, _ = diff.noise(data, t, "csp", g)
    out = DenoiserOutput(coord=coord_t, lattice=lat_t, type_logits=torch.zeros(9, 94))
    est = diff.clean_estimate(noisy, out, t, data.batch)
    assert _same_crystal(est.frac_coords, data)
    assert torch.allclose(est.lattice, data.lattice, atol=1e-9)
    assert torch.equal(est.weight, torch.ones(3, dtype=torch.float64))


def test_training_uses_its_own_estimate_on_about_the_configured_share_of_batches():
    diff = _flow(0.5)
    data = random_crystals([4, 6], torch.Generator().manual_seed(1))
    oracle = Oracle(diff, data)
    g = torch.Generator().manual_seed(2)
    used = 0
    for _ in range(40):
        oracle.seen.clear()
        diff.loss(oracle, data, task="csp", generator=g)
        prev = oracle.seen[-1][0]
        assert isinstance(prev, CleanEstimate) and oracle.seen[-1][1]  # the graded call
        if float(prev.weight.min()) == 1.0:
            used += 1
            assert len(oracle.seen) == 2 and not oracle.seen[0][1]  # a pass without gradients
            assert float(oracle.seen[0][0].weight.max()) == 0.0
            assert _same_crystal(prev.frac_coords, data)  # the exact velocity's estimate
        else:
            assert len(oracle.seen) == 1 and float(prev.weight.max()) == 0.0
    assert 10 <= used <= 30
    diff0 = build_diffusion(DiffusionConfig(objective="flow"), STATS)
    oracle.seen.clear()
    diff0.loss(oracle, data, task="csp", generator=g)
    assert oracle.seen == [(None, True, 2)]  # no estimate at all without self-conditioning


@pytest.mark.parametrize("guided", [False, True])
def test_the_sampler_hands_each_steps_estimate_to_the_next(guided):
    diff = _flow()
    data = random_crystals([4, 6], torch.Generator().manual_seed(3))
    oracle = Oracle(diff, data)
    cond = {"band_gap": torch.tensor([1.0, 2.0])} if guided else None
    out = sample_fast(oracle, diff, data.num_atoms, data.atomic_numbers, steps=6, cond=cond,
                      guidance=2.0, generator=torch.Generator().manual_seed(4))
    assert _same_crystal(out.frac_coords, data)
    assert len(oracle.seen) == 6 and oracle.seen[0][0] is None
    for prev, _, b in oracle.seen[1:]:
        assert b == (4 if guided else 2) and prev.weight.shape == (b,)
        assert _same_crystal(prev.frac_coords[: data.frac_coords.shape[0]], data)
        assert torch.allclose(prev.lattice[:2], data.lattice, atol=1e-8)


def test_configs_refuse_what_cannot_work():
    with pytest.raises(ValueError, match="objective: flow"):
        DiffusionConfig(objective="score", self_condition=0.5)
    with pytest.raises(ValueError, match="less than 1"):
        DiffusionConfig(objective="flow", self_condition=1.0)
