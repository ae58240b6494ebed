"""De novo type temperature: revealed types are drawn from softmax(logits / T)."""

from __future__ import annotations

import math

import pytest
import torch

from matgen.diffusion._processes import MaskedTypeProcess


def _share_of_first(temperature: float, n: int = 20_000) -> float:
    """Share of class 0 among ``n`` atoms revealed in one step (t = 1 -> 0) from logits that
    give classes 0 / 1 the probabilities 0.6 / 0.4."""
    logits = torch.log(torch.tensor([[0.6, 0.4] + [1e-9] * 3])).repeat(n, 1)
    z = MaskedTypeProcess().step(torch.zeros(n, dtype=torch.long), logits, torch.ones(n),
                                 torch.zeros(n), torch.Generator().manual_seed(0),
                                 temperature=temperature)
    assert (z > 0).all()  # every atom is revealed at s = 0
    return float((z == 1).float().mean())


def test_temperature_one_is_the_learned_distribution_and_lower_sharpens_it():
    p1, p05, p01 = (_share_of_first(t) for t in (1.0, 0.5, 0.1))
    expect05 = 0.36 / (0.36 + 0.16)  # 0.6^2 / (0.6^2 + 0.4^2)
    assert abs(p1 - 0.6) < 0.015 and abs(p05 - expect05) < 0.015
    assert p01 > 0.98  # (0.6 / 0.4)^10 = 57.7: almost always the most likely class


def test_sample_option_sets_records_and_checks_the_temperature(tmp_path, runs):
    from ase.io import read

    from matgen.generate import SampleInputError, generate

    teacher = runs[0].checkpoint
    kinds = {}
    for tt in (None, 0.05):
        out = tmp_path / f"t{tt}.extxyz"
        generate(out, teacher, 6, steps=4, seed=3, type_temperature=tt, progress=False,
                 log=None)
        frames = read(out, index=":")
        assert {f.info["type_temperature"] for f in frames} == {1.0 if tt is None else 0.05}
        kinds[tt] = [len(set(f.get_atomic_numbers())) for f in frames]
    assert kinds[0.05] != kinds[None], kinds
    # a near-greedy draw mixes no more elements into a crystal than the learned distribution
    assert sum(kinds[0.05]) <= sum(kinds[None])
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(SampleInputError, match="--type-temperature"):
            generate(tmp_path / "x.extxyz", teacher, 1, type_temperature=bad, progress=False,
                     log=None)
