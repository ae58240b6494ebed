"""Consistency read-out, distillation loss and multistep sampler against an exact denoiser."""

from __future__ import annotations

import torch
from test_sampling import Oracle, _data, _frac_err

from matgen.crystal import CrystalBatch
from matgen.diffusion import (
    ConsistencyDistillation,
    DatasetStats,
    DiffusionConfig,
    build_diffusion,
    consistency_readout,
    consistency_times,
    sample_consistency,
)
from matgen.nn import DenoiserOutput


def _diff():
    return build_diffusion(DiffusionConfig(), DatasetStats(mean_volume_per_atom=20.0))


def _f64(fn):
    torch.set_default_dtype(torch.float64)
    try:
        return fn()
    finally:
        torch.set_default_dtype(torch.float32)


def test_readout_of_the_exact_denoiser_is_the_data_at_low_noise():
    def run():
        data, diff = _data(), _diff()
        g = torch.Generator().manual_seed(1)
        errs = []
        for tv in (0.001, 0.2, 0.4):
            t = torch.full((2,), tv)
            ft, _ = diff.coords.add_noise(data.frac_coords, t[data.batch], g)
            lt, _ = diff.lattice.add_noise(data.lattice, t, data.num_atoms, g)
            noisy = CrystalBatch(atomic_numbers=data.atomic_numbers, frac_coords=ft, lattice=lt,
                                 num_atoms=data.num_atoms)
            f0, l0 = consistency_readout(diff, noisy, Oracle(data, diff)(noisy, t), t)
            errs.append((_frac_err(f0, data.frac_coords),
                         float((l0 - data.lattice).abs().max()), _frac_err(ft, data.frac_coords)))
        return errs

    errs = _f64(run)
    for coord_err, lat_err, noisy_err in errs:
        assert coord_err < 1e-3
    assert errs[2][2] > 0.02  # the input itself was far from the data


def test_sampler_times_and_exact_denoiser_recovers_the_data():
    assert consistency_times(1) == [1.0]
    assert consistency_times(4) == [1.0, 0.75, 0.5, 0.25]

    def run():
        data, diff = _data(), _diff()
        g = torch.Generator().manual_seed(0)
        seen = []
        out = sample_consistency(Oracle(data, diff), diff, data.num_atoms, None,
                                 times=[0.45, 0.3, 0.2], generator=g,
                                 callback=lambda i, n, s: seen.append((i, n)))
        return data, out, seen

    data, out, seen = _f64(run)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert torch.equal(out.atomic_numbers, data.atomic_numbers)  # all unmasked at the end
    assert _frac_err(out.frac_coords, data.frac_coords) < 1e-3
    assert float((out.lattice - data.lattice).abs().max()) < 0.05


class _Jittered:
    """The exact denoiser with random errors (fresh at every call) in its coordinate score or
    lattice noise: its read-outs at t and s disagree, which the loss must see."""

    def __init__(self, oracle, coord=0.0, lattice=0.0):
        self.oracle, self.coord, self.lattice = oracle, coord, lattice
        self.g = torch.Generator().manual_seed(123)

    def __call__(self, batch, t, cond=None):
        o = self.oracle(batch, t, cond)
        jc = self.coord * torch.randn(o.coord.shape, generator=self.g)
        jl = self.lattice * torch.randn(o.lattice.shape, generator=self.g)
        return DenoiserOutput(o.coord + jc, o.lattice + jl, o.type_logits)


class _Frozen(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.w = fn, torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch, t, cond=None):
        return self.fn(batch, t, cond)


def test_distillation_loss_is_small_for_a_consistent_student_and_large_for_a_wrong_one():
    def run():
        data, diff = _data(), _diff()
        batch = CrystalBatch.collate([data] * 16)
        oracle = Oracle(batch, diff)
        teacher = _Frozen(oracle)
        cd = ConsistencyDistillation(diff, teacher, intervals=40)
        assert not teacher.w.requires_grad  # the teacher is frozen
        logs = {"good": [], "coord": [], "lattice": []}
        students = {"good": oracle, "coord": _Jittered(oracle, coord=1.0),
                    "lattice": _Jittered(oracle, lattice=0.3)}
        for seed in range(4):
            for k, st in students.items():
                g = torch.Generator().manual_seed(seed)  # same noise for every student
                logs[k].append(cd.loss(st, batch, task="csp", generator=g)[1])
        g = torch.Generator().manual_seed(0)
        gen = cd.loss(oracle, batch, task="gen", generator=g)[1]
        return logs, gen

    logs, gen = _f64(run)

    def mean(k, key):
        return sum(x[key] for x in logs[k]) / len(logs[k])

    assert all(torch.isfinite(torch.tensor(x["loss"])) for v in logs.values() for x in v)
    assert mean("coord", "loss_coord") > 10 * mean("good", "loss_coord")
    assert mean("lattice", "loss_lattice") > 3 * mean("good", "loss_lattice")
    assert gen["loss_type"] < 1e-3  # the exact type logits have ~zero cross-entropy
