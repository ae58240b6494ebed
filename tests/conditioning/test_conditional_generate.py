"""``generate``: hard chemical-system constraint and value / range / inequality targets."""

from __future__ import annotations

import math

import pytest
from ase.io import read

from matgen.generate import generate


def test_chemsys_is_a_hard_constraint(cond_workdir, pretrained):
    out = cond_workdir / "chemsys.extxyz"
    res = generate(out, pretrained, num=24, chemsys="Li-Fe-O", sampler="fast", steps=6,
                   batch_size=12, seed=3, device="cpu", progress=False, log=None)
    frames = read(out, index=":")
    assert res.num_structures == len(frames) == 24
    used = set()
    for a in frames:
        symbols = set(a.get_chemical_symbols())
        assert symbols <= {"Li", "Fe", "O"}, symbols
        used |= symbols
        assert a.info["chemsys"] == "Li-Fe-O"
    assert len(used) >= 2  # the mask restricts, it does not collapse to one element


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [("band_gap=1.5", 1.5, 1.5), ("band_gap=1.5:2.5", 1.5, 2.5), ("band_gap=:0.5", -math.inf, 0.5)],
)
def test_value_range_inequality_targets(cond_workdir, pretrained, text, low, high):
    out = cond_workdir / f"cond_{abs(hash(text))}.extxyz"
    generate(out, pretrained, num=8, conditions=[text], guidance=2.0, sampler="fast", steps=4,
             seed=1, device="cpu", progress=False, log=None)
    frames = read(out, index=":")
    assert len(frames) == 8
    targets = [float(a.info["target_band_gap"]) for a in frames]
    assert all(low <= v <= high for v in targets), targets
    if low == high:
        assert targets == [low] * 8
    else:
        assert len(set(targets)) == 8  # one target drawn per structure
    for a in frames:
        assert a.info["conditions"] == text
        assert float(a.info["guidance"]) == 2.0
        assert len(a) > 0 and a.cell.volume > 0


def test_unknown_condition_is_refused(cond_workdir, pretrained):
    from matgen.generate import SampleInputError

    with pytest.raises(SampleInputError, match="hardness"):
        generate(cond_workdir / "x.extxyz", pretrained, num=2, conditions=["hardness=3"],
                 sampler="fast", steps=2, device="cpu", progress=False, log=None)


@pytest.mark.parametrize("scale", [-1.0, math.nan, math.inf])
def test_guidance_below_zero_or_not_finite_is_refused(cond_workdir, pretrained, scale):
    from matgen.generate import SampleInputError

    with pytest.raises(SampleInputError, match="--guidance must be a finite number >= 0"):
        generate(cond_workdir / "g.extxyz", pretrained, num=2, conditions=["band_gap=2"],
                 guidance=scale, sampler="fast", steps=2, device="cpu", progress=False, log=None)
    assert not (cond_workdir / "g.extxyz").exists()


@pytest.mark.parametrize("text", ["band_gap=1.5", "band_gap=1.5:2.5", "band_gap=:0.5"])
def test_cli_sample_value_range_inequality_with_chemsys(cond_workdir, pretrained, text):
    from typer.testing import CliRunner

    from matgen.cli import app

    out = cond_workdir / f"cli_{abs(hash(text))}.extxyz"
    r = CliRunner().invoke(app, [
        "sample", "--checkpoint", str(pretrained), "--num", "6", "--chemsys", "Li-Fe-O",
        "--condition", text, "--guidance", "2", "--sampler", "fast", "--steps", "3",
        "--device", "cpu", "--no-progress", "--out", str(out)])
    assert r.exit_code == 0, r.output
    frames = read(out, index=":")
    assert len(frames) == 6
    assert all(set(a.get_chemical_symbols()) <= {"Li", "Fe", "O"} for a in frames)
    assert all(a.info["conditions"] == text for a in frames)
