"""A flow-matching dense model trained on both tasks generates de novo through every option a
user has: classifier-free guidance on a condition window, a chemical-system restriction, and
both samplers with an anti-annealing slope."""

from __future__ import annotations

import math


def test_flow_de_novo_with_guidance_chemsys_and_slope(tmp_path, tiny_setup):
    from ase.io import read

    from matgen.generate import generate
    from matgen.training import train

    make_config, data = tiny_setup
    cfg = make_config(model={"arch": "dense", "hidden": 16, "layers": 1, "num_freqs": 2},
                      diffusion={"objective": "flow", "flow_slope": 5.0}, task="both",
                      max_steps=4)
    ck = train(cfg, data=data, out=tmp_path / "flow", device="cpu", progress=False,
               log=None).checkpoint
    for sampler in ("pc", "fast"):
        out = tmp_path / f"{sampler}.extxyz"
        res = generate(out, ck, 6, task="gen", chemsys="Sr-Ti-O", conditions=["band_gap=1:2"],
                       guidance=2.0, sampler=sampler, steps=5, seed=3, progress=False,
                       log=None)
        frames = read(out, index=":")
        assert len(frames) == 6 and res is not None
        for f in frames:
            assert set(f.get_chemical_symbols()) <= {"Sr", "Ti", "O"}
            assert math.isfinite(f.get_volume()) and f.get_volume() > 1.0
            assert f.info["guidance"] == 2.0 and f.info["flow_slope"] == 5.0
            assert 1.0 <= f.info["target_band_gap"] <= 2.0
