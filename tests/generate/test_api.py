"""The notebook API: ``import matgen`` is light; ``matgen.sample`` returns the structures
``matgen.generate.generate`` writes for the same seed; ``matgen.score`` returns scored ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_import_matgen_imports_no_torch():
    code = ("import sys, matgen; assert 'torch' not in sys.modules, 'torch'; "
            "assert callable(matgen.sample) and 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_an_attribute_error():
    import matgen

    with pytest.raises(AttributeError):
        matgen.no_such_thing  # noqa: B018


def test_sample_returns_what_generate_writes(runs, tmp_path):
    from ase.io import read

    import matgen
    from matgen.generate import generate

    teacher, _, _ = runs
    kw = {"steps": 3, "seed": 5, "compositions": ["NaCl"], "conditions": ["band_gap=1.5"],
          "device": "cpu"}
    generate(tmp_path / "g.extxyz", teacher.checkpoint, 2, progress=False, log=None, **kw)
    frames = read(str(tmp_path / "g.extxyz"), index=":", format="extxyz")
    structures = matgen.sample(2, teacher.checkpoint, out=tmp_path / "s.extxyz", **kw)
    assert len(structures) == len(frames) == 2
    for s, a in zip(structures, frames, strict=True):
        assert [site.specie.Z for site in s] == list(a.numbers)
        np.testing.assert_allclose(s.lattice.matrix, a.cell.array, atol=1e-5)
        np.testing.assert_allclose(s.frac_coords, a.get_scaled_positions(wrap=False), atol=1e-5)
        assert s.properties["sample_id"] == a.info["sample_id"]
        assert s.properties["sampler"] == "pc" and s.properties["steps"] == 3
        assert s.properties["target_band_gap"] == pytest.approx(1.5)
        assert "material_id" not in s.properties  # no source row
    again = read(str(tmp_path / "s.extxyz"), index=":", format="extxyz")
    np.testing.assert_allclose(again[1].positions, frames[1].positions)


def test_sample_defaults_to_the_cli_sampler_choice():
    """The API chooses the sampler as ``matgen sample`` does (``auto``)."""
    import torch

    from matgen.generate import DEFAULT_STEPS, SampleSpec, choose_sampler

    spec = SampleSpec()
    assert spec.sampler == "auto" and spec.checkpoint is None and DEFAULT_STEPS["pc"] == 1000
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    notes = []
    assert choose_sampler(spec, False, gpu, notes.append, flow=True) == "fast"
    assert choose_sampler(spec, False, cpu, notes.append, flow=True) == "fast"
    assert choose_sampler(spec, False, gpu, notes.append) == "pc"  # a score model on a GPU
    assert choose_sampler(spec, False, cpu, notes.append) == "fast"
    assert choose_sampler(spec, True, gpu, notes.append) == "consistency"
    assert choose_sampler(SampleSpec(steps=200), False, cpu, notes.append) == "pc"


def test_score_returns_structures_with_scores(rock_salt, diamond_si, tmp_path):
    import matgen

    out = matgen.score([rock_salt, diamond_si], relax=False, device="cpu", predictors=[],
                       out=tmp_path / "s.csv")
    assert [s.composition.reduced_formula for s in out] == ["NaCl", "Si"]
    for s in out:
        assert s.properties["error"] == ""
        assert np.isfinite(s.properties["energy_per_atom"])
        assert "relaxed_cif" not in s.properties
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 3


def test_csp_takes_the_checkpoints_fast_steps_by_default_and_de_novo_50(tmp_path):
    """The fast sampler's default step count for CSP is the checkpoint's own
    (``diffusion.csp_fast_steps``: 200 for the shipped l32 since round 33's CPU clause held,
    round33_rule.txt; 100 for c14, csp_steps_rule.txt); a checkpoint without one, and de novo,
    take 50; an explicit ``steps`` always wins."""
    import json
    import shutil

    from matgen.diffusion import DiffusionConfig
    from matgen.generate import DEFAULT_MODEL_DIR, SampleSpec, default_steps, plan_sampling

    own = DiffusionConfig(objective="flow", csp_fast_steps=100)
    assert default_steps("fast", "csp", own) == 100
    assert default_steps("fast", "gen", own) == 50 and default_steps("fast", "csp") == 50
    assert default_steps("pc", "csp", own) == 1000
    assert default_steps("consistency", "csp", own) == 2
    csp = SampleSpec(compositions=["NaCl"], num=1, device="cpu")
    assert plan_sampling(csp, lambda _m: None).steps == 200  # the shipped model's own
    assert plan_sampling(SampleSpec(num=2, device="cpu"), lambda _m: None).steps == 50
    mine = SampleSpec(compositions=["NaCl"], num=1, steps=20, device="cpu")
    assert plan_sampling(mine, lambda _m: None).steps == 20
    setting = tmp_path / "setting"  # the same weights with the setting: its 100 for CSP
    shutil.copytree(DEFAULT_MODEL_DIR, setting)
    doc = json.loads((setting / "model.json").read_text())
    doc["metadata"]["diffusion"]["csp_fast_steps"] = 100
    (setting / "model.json").write_text(json.dumps(doc))
    other = SampleSpec(compositions=["NaCl"], num=1, device="cpu", checkpoint=str(setting))
    assert plan_sampling(other, lambda _m: None).steps == 100
    gen = SampleSpec(num=2, device="cpu", checkpoint=str(setting))
    assert plan_sampling(gen, lambda _m: None).steps == 50
    doc["metadata"]["diffusion"]["csp_fast_steps"] = None  # no setting: 50 for CSP too
    (setting / "model.json").write_text(json.dumps(doc))
    assert plan_sampling(other, lambda _m: None).steps == 50
