"""The shipped default model draws de novo crystals composition-first (composition.json
sampling.denovo = composition at temperature 0.95; rules and numbers:
benchmarks/ablations/composition_first_rule.txt, composition_calibration_rule.txt,
benchmarks/results/composition_first_h100.json, composition_calibration_cpu.json):
its composition model spells real-looking cells, --chemsys holds, and --denovo joint still
reaches the denoiser's own types (the real networks, CPU)."""

from __future__ import annotations

import math

import torch
from ase.io import read

from matgen.generate import DEFAULT_MODEL_DIR, generate
from matgen.generate._compositions import composition_defaults


def test_defaults_and_the_composition_model_on_its_own():
    from matgen.evaluation import smact_validity
    from matgen.models import load_composition_model

    assert composition_defaults(DEFAULT_MODEL_DIR) == {"denovo": "composition",
                                                       "temperature": 0.95}
    model = load_composition_model(DEFAULT_MODEL_DIR)
    assert model.cfg.conditions == ["band_gap", "formation_energy_per_atom", "e_above_hull"]
    comps = model.sample(torch.full((1000, 3), math.nan), temperature=0.95,
                         generator=torch.Generator().manual_seed(0))
    valid = sum(smact_validity([z for z in c for _ in range(c[z])]) for c in comps) / 1000
    elements = [len(c) for c in comps]
    assert valid > 0.84  # 0.865 (mp20_reduced val itself: 0.92)
    assert sum(e >= 5 for e in elements) / 1000 < 0.05  # 2.2%; joint sampling 7.7%; val 1.6%
    assert all(1 <= sum(c.values()) <= 20 for c in comps)
    # the calibrated model draws common light anions as often as the data has them: F in 6.7%
    # of these cells (train 7.05%; the composition model before the calibration, 4.4-4.9%)
    assert sum(9 in c for c in comps) / 1000 > 0.055


def test_default_sampling_is_composition_first_and_chemsys_holds(tmp_path):
    out = tmp_path / "lfo.extxyz"
    generate(out, None, 4, chemsys="Li-Fe-O", sampler="fast", steps=10, seed=0, device="cpu",
             progress=False, log=None)
    frames = read(out, index=":")
    assert len(frames) == 4
    assert {f.info["denovo"] for f in frames} == {"composition"}
    assert {f.info["composition_temperature"] for f in frames} == {0.95}
    assert all(set(f.get_chemical_symbols()) <= {"Li", "Fe", "O"} for f in frames)
    out = tmp_path / "joint.extxyz"
    generate(out, None, 2, denovo="joint", sampler="fast", steps=5, seed=0, device="cpu",
             progress=False, log=None)
    assert all("denovo" not in f.info for f in read(out, index=":"))
