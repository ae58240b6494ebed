"""One crystal that fails numerically does not take the batch down (issue 20, item 11)."""

from __future__ import annotations

import torch

from matgen.diffusion import (
    SAMPLER_FAILED,
    DatasetStats,
    DiffusionConfig,
    build_diffusion,
    sample,
    sample_fast,
)
from matgen.nn import DenoiserOutput

STATS = DatasetStats(mean_volume_per_atom=15.0, num_atoms_counts={2: 1})


def _poisoned(bad_crystal: int, from_call: int):
    """A zero denoiser whose outputs for one crystal turn NaN from its ``from_call``-th call."""
    calls = {"n": 0}

    def f(batch, t, cond=None):
        calls["n"] += 1
        n = batch.frac_coords.shape[0]
        coord = torch.zeros(n, 3, dtype=batch.lattice.dtype)
        logits = torch.zeros(n, 94, dtype=batch.lattice.dtype)
        lat = torch.zeros_like(batch.lattice)
        if calls["n"] >= from_call:
            atoms = batch.batch == bad_crystal
            coord[atoms] = float("nan")
            logits[atoms] = float("nan")
        return DenoiserOutput(coord=coord, lattice=lat, type_logits=logits)

    return f


def test_a_nan_crystal_is_marked_and_the_others_finish():
    na = torch.tensor([2, 3, 2])
    for objective in ("score", "flow"):
        diff = build_diffusion(DiffusionConfig(objective=objective), STATS)
        for sampler in (sample, sample_fast):
            out = sampler(_poisoned(1, 3), diff, na, None, steps=6,
                          generator=torch.Generator().manual_seed(0))  # de novo: types too
            assert out.properties[SAMPLER_FAILED].tolist() == [0.0, 1.0, 0.0]
            assert torch.isfinite(out.frac_coords).all() and torch.isfinite(out.lattice).all()
            assert (out.atomic_numbers > 0).all()


def test_no_failure_leaves_no_marker():
    diff = build_diffusion(DiffusionConfig(), STATS)
    out = sample_fast(_poisoned(0, 10**9), diff, torch.tensor([2, 2]), None, steps=3,
                      generator=torch.Generator().manual_seed(0))
    assert SAMPLER_FAILED not in out.properties
