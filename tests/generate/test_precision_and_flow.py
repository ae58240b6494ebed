"""Sampling precision: bf16 autocast wraps only the denoiser; the sampler stays float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matgen.generate._generate import sampling_denoiser
from matgen.models import DenoiserConfig, build_denoiser
from matgen.testing import random_crystals


def test_bf16_wrapper_returns_float32_close_to_fp32_and_auto_is_fp32_on_cpu():
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(arch="dense", hidden=32, layers=2, num_freqs=4)).eval()
    batch = random_crystals([3, 5], torch.Generator().manual_seed(0), dtype=torch.float32)
    t = torch.tensor([0.3, 0.8])
    assert sampling_denoiser(model, "auto", torch.device("cpu")) is model
    assert sampling_denoiser(model, "fp32", torch.device("cuda")) is model
    wrapped = sampling_denoiser(model, "bf16", torch.device("cpu"))
    assert next(wrapped.parameters()).dtype == torch.float32  # samplers read the state dtype here
    with torch.no_grad():
        ref, low = model(batch, t), wrapped(batch, t)
    for name in ("coord", "lattice", "type_logits"):
        a, b = getattr(ref, name), getattr(low, name)
        assert b.dtype == torch.float32
        assert not torch.equal(a, b)  # bf16 really ran
        assert torch.allclose(a, b, atol=0.05 * float(a.abs().max()) + 1e-3)


def test_dense_flow_model_trains_checkpoints_and_samples_with_both_samplers(tmp_path, tiny_setup):
    """arch: dense + objective: flow through the real train loop, checkpoint and generate()."""
    from ase.io import read

    from matgen.generate import generate
    from matgen.training import train

    make_config, data = tiny_setup
    cfg = make_config(model={"arch": "dense", "hidden": 16, "layers": 1, "num_freqs": 2},
                  diffusion={"objective": "flow", "flow_slope": 2.0}, max_steps=4)
    res = train(cfg, data=data, out=tmp_path / "flow", device="cpu", progress=False, log=None)
    outs = {}
    for sampler in ("pc", "fast"):
        out = tmp_path / f"{sampler}.extxyz"
        generate(out, res.checkpoint, 2, task="csp", compositions=["NaCl", "SrTiO3"],
                 sampler=sampler, steps=5, seed=1, progress=False, log=None)
        frames = read(out, index=":")
        assert len(frames) == 4 and all(f.get_volume() > 1.0 for f in frames)
        outs[sampler] = [f.get_scaled_positions() for f in frames]
    # a flow model has one sampler, the Euler ODE: pc and fast give the same crystals
    assert all((a == b).all() for a, b in zip(outs["pc"], outs["fast"], strict=True))


def test_flow_slope_and_clash_options_change_a_flow_model_and_are_refused_for_a_score_model(
        tmp_path, tiny_setup, runs):
    from ase.io import read

    from matgen.generate import SampleInputError, generate
    from matgen.training import train

    make_config, data = tiny_setup
    cfg = make_config(model={"arch": "dense", "hidden": 16, "layers": 1, "num_freqs": 2},
                      diffusion={"objective": "flow"}, max_steps=3)
    ck = train(cfg, data=data, out=tmp_path / "flow", device="cpu", progress=False,
               log=None).checkpoint
    pos = {}
    for slope in (None, 4.0):
        out = tmp_path / f"s{slope}.extxyz"
        generate(out, ck, 1, task="csp", compositions=["SrTiO3"], sampler="fast", steps=6,
                 flow_slope=slope, progress=False, log=None)
        frame = read(out)
        assert frame.info["flow_slope"] == (0.0 if slope is None else 4.0)
        pos[slope] = frame.get_scaled_positions()
    assert not (pos[None] == pos[4.0]).all()
    assert "clash_scale" not in frame.info  # off unless asked for
    out = tmp_path / "clash.extxyz"
    generate(out, ck, 1, task="csp", compositions=["SrTiO3"], sampler="fast", steps=6,
             flow_slope=4.0, clash_scale=0.9, progress=False, log=None)
    frame = read(out)
    assert frame.info["clash_scale"] == 0.9
    assert frame.get_all_distances(mic=True)[~np.eye(5, dtype=bool)].min() > 0.5
    teacher = runs[0]  # the score-based tiny teacher of the pinned-output tests
    for option in ({"flow_slope": 1.0}, {"clash_scale": 0.5}):
        with pytest.raises(SampleInputError, match="flow-matching checkpoint"):
            generate(tmp_path / "x.extxyz", teacher.checkpoint, 1, task="csp",
                     compositions=["NaCl"], steps=2, progress=False, log=None, **option)


def test_self_conditioned_dense_flow_trains_resumes_and_samples_guided_and_de_novo(
        tmp_path, tiny_setup):
    """model.self_condition + diffusion.self_condition through the real train loop (initialised
    from a model without it, with validation and a resume), the checkpoint, and generate() with
    guidance, CSP and de novo; one of the two alone is refused."""
    from ase.io import read

    from matgen.generate import generate
    from matgen.training import train

    make_config, data = tiny_setup
    plain = {"arch": "dense", "hidden": 16, "layers": 1, "num_freqs": 2}
    parent = train(make_config(model=plain, diffusion={"objective": "flow"}, max_steps=2),
                   data=data, out=tmp_path / "plain", device="cpu", progress=False, log=None)
    model = {**plain, "self_condition": True}
    cfg = make_config(model=model, diffusion={"objective": "flow", "self_condition": 0.5},
                      max_steps=4)
    said = []
    res = train(cfg, data=data, out=tmp_path / "sc", device="cpu", progress=False,
                log=said.append, val_data=data, init=parent.checkpoint)
    assert any("8 new tensors" in line for line in said), said  # the two sc_ MLPs only
    longer = cfg.model_copy(update={"max_steps": 6})
    res = train(longer, data=data, out=tmp_path / "sc", device="cpu", progress=False, log=None,
                resume=True)
    assert res.resumed_from == 4 and res.step == 6
    for task, kw in (("csp", {"compositions": ["NaCl", "SrTiO3"]}), ("gen", {})):
        out = tmp_path / f"{task}.extxyz"
        generate(out, res.checkpoint, 2, task=task, sampler="fast", steps=5, seed=1,
                 conditions=["band_gap=2.0"], guidance=2.0, progress=False, log=None, **kw)
        frames = read(out, index=":")
        assert len(frames) == (4 if task == "csp" else 2)
        assert all(f.get_volume() > 1.0 for f in frames)
    for half in ({"model": model, "diffusion": {"objective": "flow"}},
                 {"diffusion": {"objective": "flow", "self_condition": 0.5}}):
        with pytest.raises(ValueError, match="self-conditioning needs both"):
            make_config(**half)
