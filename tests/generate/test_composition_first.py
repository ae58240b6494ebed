"""Composition-first de novo generation: the composition model draws the atoms, the denoiser's
CSP mode their structure; options, defaults, records and errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch


@pytest.fixture
def paired(runs, tiny_setup, tmp_path_factory):
    """The tiny teacher's checkpoint copied beside a small composition model trained on its
    eight crystals (NaCl and SrTiO3), composition-first by default at temperature 0.5."""
    from matgen.crystal import CrystalBatch
    from matgen.data import CrystalDataset
    from matgen.models import CompositionConfig, save_composition_model
    from matgen.training import CompositionTrainConfig, train_composition_model

    b: CrystalBatch = tiny_setup[1]
    ds = CrystalDataset(b.atomic_numbers, b.frac_coords, b.lattice, b.num_atoms,
                        dict(b.properties))
    cfg = CompositionTrainConfig(epochs=40, patience=40, batch_size=4, lr=1e-2,
                                 model=CompositionConfig(hidden=32, dropout=0.0, max_atoms=10))
    model, record = train_composition_model(ds, ds, ["band_gap"], cfg, log=lambda m: None)
    folder = tmp_path_factory.mktemp("paired") / "ckpt"
    shutil.copytree(runs[0].checkpoint, folder)
    save_composition_model(model, folder, record, {"denovo": "composition", "temperature": 0.5})
    return folder


def _formulas(path):
    from ase.io import read

    frames = read(path, index=":")
    return frames, [f.get_chemical_formula(mode="metal") for f in frames]


def test_default_mode_draws_known_compositions_and_records_them(tmp_path, paired):
    from matgen.generate import generate

    out = tmp_path / "cf.extxyz"
    generate(out, paired, 8, steps=3, seed=1, progress=False, log=None)
    frames, formulas = _formulas(out)
    assert len(frames) == 8 and set(formulas) <= {"NaCl", "SrTiO3"}
    assert {f.info["denovo"] for f in frames} == {"composition"}
    assert {f.info["composition_temperature"] for f in frames} == {0.5}
    assert all(f.info["task"] == "gen" for f in frames)
    for f in frames:  # the frame's atoms are the drawn composition
        assert f.info["composition"].replace("1", "") in ("NaCl", "SrTiO3", "ClNa", "O3SrTi")


def test_joint_mode_and_chemsys_and_conditions(tmp_path, paired):
    from matgen.generate import generate

    out = tmp_path / "joint.extxyz"
    generate(out, paired, 4, steps=3, seed=1, denovo="joint", progress=False, log=None)
    frames, _ = _formulas(out)
    assert all("denovo" not in f.info and "type_temperature" in f.info for f in frames)
    out = tmp_path / "sys.extxyz"
    generate(out, paired, 6, steps=3, seed=2, chemsys="Na-Cl", conditions=["band_gap=0:1"],
             guidance=2.0, progress=False, log=None)
    frames, formulas = _formulas(out)
    assert set(formulas) == {"NaCl"}
    assert all(0 <= f.info["target_band_gap"] <= 1 for f in frames)


def test_same_seed_same_samples_and_the_fingerprint_tells_modes_apart(tmp_path, paired):
    from matgen.generate import SampleSpec, generate, plan_sampling
    from matgen.generate._generate import plan_fingerprint

    a, b = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    for p in (a, b):
        generate(p, paired, 5, steps=3, seed=4, progress=False, log=None)
    assert _formulas(a)[1] == _formulas(b)[1]
    fa = _formulas(a)[0][0].get_positions()
    assert torch.allclose(torch.tensor(fa), torch.tensor(_formulas(b)[0][0].get_positions()))
    prints = {plan_fingerprint(plan_sampling(SampleSpec(checkpoint=paired, num=5, seed=4,
                                                        denovo=m), lambda s: None))
              for m in ("joint", "composition")}
    assert len(prints) == 2


def test_errors_are_one_line(tmp_path, runs, paired):
    from matgen.generate import SampleInputError, generate

    def bad(match, ckpt=paired, **kw):
        with pytest.raises(SampleInputError, match=match) as e:
            generate(tmp_path / "x.extxyz", ckpt, 1, steps=2, progress=False, log=None, **kw)
        assert "\n" not in str(e.value)

    bad("has no composition model", ckpt=runs[0].checkpoint, denovo="composition")
    bad("--denovo must be joint or composition", denovo="both")
    bad("--composition-temperature must be", composition_temperature=0.0)
    bad("apply to de novo", compositions=["NaCl"], denovo="composition")
    bad("applies to composition-first", denovo="joint", composition_temperature=0.9)
    bad("applies to composition-first", ckpt=runs[0].checkpoint, composition_temperature=0.9)
    broken = tmp_path / "broken"
    shutil.copytree(paired, broken)
    (broken / "composition.safetensors").write_bytes(b"junk")
    bad("composition.safetensors: unusable", ckpt=broken)
    meta = json.loads((paired / "composition.json").read_text())
    assert meta["sampling"]["denovo"] == "composition"


def test_cli_flags(tmp_path, paired):
    from typer.testing import CliRunner

    from matgen.cli import app

    out = tmp_path / "c.extxyz"
    res = CliRunner().invoke(app, ["sample", "--checkpoint", str(paired), "-n", "3", "--steps",
                                   "2", "--denovo", "composition", "--composition-temperature",
                                   "0.7", "--no-progress", "-o", str(out)])
    assert res.exit_code == 0, res.output
    frames, _ = _formulas(out)
    assert {f.info["composition_temperature"] for f in frames} == {0.7}
    res = CliRunner().invoke(app, ["sample", "--composition", "NaCl", "--denovo", "composition",
                                   "--checkpoint", str(paired), "-o", str(out)])
    assert res.exit_code == 2 and "apply to de novo" in res.output
