"""generator.finetune with a composition model: composition-first de novo sampling draws the
atoms from the composition model, so fine-tuning moves it towards the hits too, and the
denoiser keeps the task mix whose CSP mode places those atoms."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from matgen.campaign._finetune import (
    _finetune_composition,
    _train_config,
    finetune_step,
    recorded_versions,
)

TRAIN_CONFIG = {"lr": 2e-3, "weight_decay": 0.1, "drop_prob": 0.2, "drop_all_prob": 0.3}


@pytest.fixture(scope="module")
def paired_ckpt(tmp_path_factory, toy_csv):
    """The tiny denoiser of ``_finetune_setup`` beside an untrained small composition model
    (conditioned on the campaign's labels), composition-first by default."""
    from _finetune_setup import tiny_checkpoint

    from matgen.models import CompositionConfig, CompositionModel, save_composition_model

    d = tmp_path_factory.mktemp("ftc_ckpt")
    mp = pytest.MonkeyPatch()
    mp.setenv("MATGEN_CACHE_DIR", str(d / "cache"))
    folder = d / "paired"
    shutil.copytree(tiny_checkpoint(d, toy_csv), folder)
    torch.manual_seed(0)
    cfg = CompositionConfig(hidden=16, conditions=["band_gap", "e_above_hull"],
                            cond_mean=[1.0, 0.05], cond_std=[1.0, 0.05])
    save_composition_model(CompositionModel(cfg), folder, {"train_config": TRAIN_CONFIG},
                           sampling={"denovo": "composition", "temperature": 0.9})
    yield folder
    mp.undo()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))


def _hit_nll(folder: Path, camp) -> float:
    """Mean NLL of the oracle hits' compositions, conditioned on their labels."""
    from pymatgen.core import Structure

    from matgen.models import encode, load_composition_model

    model = load_composition_model(folder)
    labels = camp.store.labels()
    hits = [c for c in camp.store.candidates(selected=True) if camp.is_hit(labels[c.id])]
    comps = [{el.Z: int(n) for el, n in Structure.from_str(c.cif, fmt="cif").composition.items()}
             for c in hits]
    y = torch.tensor([[labels[c.id]["band_gap"], labels[c.id]["e_above_hull"]] for c in hits])
    with torch.no_grad():
        return float(model.nll(*encode(comps), model.normalise(y)).mean())


def test_finetuned_version_has_a_composition_model_closer_to_the_hits(
    tmp_path, toy_csv, paired_ckpt, cache
):
    from _finetune_setup import campaign, write_config
    from safetensors.torch import load_file

    from matgen.generate import generate

    camp = campaign(write_config(tmp_path, toy_csv, paired_ckpt, rounds=2, steps=4, lr=2e-3),
                    toy_csv)
    camp.run(rounds=1)
    finetune_step(camp, 1)
    (rec,) = recorded_versions(camp.store)
    folder = Path(rec["checkpoint"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "composition.json", "composition.safetensors", "model.json", "model.safetensors"]
    new, old = (load_file(f / "composition.safetensors") for f in (folder, paired_ckpt))
    assert new.keys() == old.keys() and any(not torch.equal(new[k], old[k]) for k in new)
    assert _hit_nll(folder, camp) < _hit_nll(paired_ckpt, camp)

    comp = rec["details"]["composition"]  # 2 hits + 2 replayed rows, the denoiser's steps
    assert comp["steps"] == 4 and comp["rows"] == 4 and comp["dropped"] == 0
    assert comp["nll_after"] < comp["nll_before"]
    assert comp["lr"] == 2e-3  # the campaign's rate, as the denoiser's
    meta = json.loads((folder / "composition.json").read_text())
    parent_meta = json.loads((paired_ckpt / "composition.json").read_text())
    assert meta["sampling"] == parent_meta["sampling"]  # sampling behaves as the parent's
    assert meta["config"] == parent_meta["config"]  # condition scaling kept
    assert meta["record"]["train_config"] == TRAIN_CONFIG
    (entry,) = meta["record"]["finetuned"]
    assert entry["parent"] == str(paired_ckpt) and entry["nll_after"] == comp["nll_after"]

    out = tmp_path / "denovo.extxyz"  # the new version still samples composition-first
    generate(out, folder, 3, steps=3, seed=1, progress=False, log=None)
    from ase.io import read

    frames = read(out, index=":")
    assert len(frames) == 3 and {f.info["denovo"] for f in frames} == {"composition"}


def test_denoiser_task_mix_follows_whether_the_parent_has_a_composition_model(tmp_path):
    from matgen.campaign._config import FinetuneConfig
    from matgen.generate import DEFAULT_MODEL_DIR, read_metadata

    base = read_metadata(DEFAULT_MODEL_DIR)["config"]
    assert base["task"] == "both"  # the shipped model: composition-first, CSP and de novo
    ft = FinetuneConfig()
    paired = _train_config(str(DEFAULT_MODEL_DIR), ft, seed=1, n_rows=8)
    assert paired.task == "both" and paired.csp_share == base["csp_share"]
    plain = tmp_path / "plain"  # no composition model: de novo by the joint mode alone
    shutil.copytree(DEFAULT_MODEL_DIR, plain, ignore=shutil.ignore_patterns("composition.*"))
    assert _train_config(str(plain), ft, seed=1, n_rows=8).task == "gen"
    # the parent's sampling defaults (metadata.diffusion, which may be set after training) carry
    # over, not those its training config recorded
    d = paired.diffusion
    assert (d.flow_slope, d.clash_scale, d.clash_floor) == (30.0, 0.4, 0.7)
    later = tmp_path / "later"
    shutil.copytree(DEFAULT_MODEL_DIR, later)
    doc = json.loads((later / "model.json").read_text())
    doc["metadata"]["diffusion"]["flow_slope"] = 25.0
    (later / "model.json").write_text(json.dumps(doc))
    assert base["diffusion"]["flow_slope"] != 25.0
    assert _train_config(str(later), ft, seed=1, n_rows=8).diffusion.flow_slope == 25.0
    # the hits are learnt as they are: no substitution, though the shipped model trained with it
    assert base["data"]["substitute"] == 0.6 and paired.data.substitute == 0.0


def test_no_composition_model_writes_none_and_unknown_elements_are_left_out(
    tmp_path, toy_csv, cache, caplog
):
    import logging

    import pandas as pd
    from pymatgen.core import Lattice, Structure

    from matgen.campaign._config import FinetuneConfig
    from matgen.generate import DEFAULT_MODEL_DIR
    from matgen.models import CompositionConfig, CompositionModel, save_composition_model

    parent = tmp_path / "parent"
    shutil.copytree(DEFAULT_MODEL_DIR, parent, ignore=shutil.ignore_patterns("composition.*"))
    plain = tmp_path / "plain"
    plain.mkdir()
    ft = FinetuneConfig(steps=3, batch_size=4)
    assert _finetune_composition(str(parent), toy_csv, ft, 1, plain) is None
    assert not list(plain.iterdir())

    torch.manual_seed(0)  # Z = 1 .. 20: the toy set's Rb, Sr, Cd, Cs, Ba, ... are beyond it
    save_composition_model(CompositionModel(CompositionConfig(hidden=8, num_types=20)),
                           parent, sampling={"denovo": "composition"})
    df = pd.read_csv(toy_csv).head(8)
    df["cif"] = [Structure(Lattice.cubic(4.0 + 0.1 * i), ["Na", "Cl"],
                           [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif") if i < 2 else c
                 for i, c in enumerate(df["cif"])]  # two NaCl, six from the toy set
    csv = tmp_path / "rows.csv"
    df.to_csv(csv, index=False)
    heavy = sum(any(s.Z > 20 for s in Structure.from_str(c, fmt="cif").composition)
                for c in df["cif"])
    paired = tmp_path / "paired"
    paired.mkdir()
    with caplog.at_level(logging.WARNING, logger="matgen.training"):
        rec = _finetune_composition(str(parent), csv, ft, 1, paired)
    assert heavy and rec["dropped"] == heavy and rec["rows"] == 8 - heavy
    assert f"{heavy} of 8 composition(s) left out" in caplog.text
    assert rec["steps"] == 3 and math.isfinite(rec["nll_after"])
    assert sorted(p.name for p in paired.iterdir()) == ["composition.json",
                                                       "composition.safetensors"]
    meta = json.loads((paired / "composition.json").read_text())
    assert meta["sampling"] == {"denovo": "composition"}
    assert meta["record"]["finetuned"][0]["steps"] == 3


def test_sigkill_while_writing_the_composition_model_leaves_no_version(
    tmp_path, toy_csv, paired_ckpt, monkeypatch
):
    """The composition model is written into the version's temporary folder: a kill there
    leaves no version folder; the resumed campaign writes the whole one."""
    import signal

    from _finetune_setup import campaign, run_killer, write_config

    from matgen.campaign import Campaign, load_config

    config = write_config(tmp_path, toy_csv, paired_ckpt, rounds=2, steps=2)
    cache_dir = tmp_path / "cache"
    assert run_killer(config, toy_csv, "mid_composition", cache_dir) == -signal.SIGKILL
    gen = tmp_path / "work" / "generator"
    assert not (gen / "round_0001").exists()
    assert any(gen.glob(".round_0001.*/composition.json"))  # written, never renamed
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(cache_dir))
    campaign(config, toy_csv).run()
    (rec,) = recorded_versions(Campaign(load_config(config)).store)
    assert sorted(p.name for p in Path(rec["checkpoint"]).iterdir()) == [
        "composition.json", "composition.safetensors", "model.json", "model.safetensors"]
    assert rec["details"]["composition"]["steps"] == 2


def test_finetuned_version_keeps_the_parents_sampling_defaults(
    tmp_path, toy_csv, paired_ckpt, cache
):
    """Sampling settings chosen after training live in ``metadata.diffusion`` only; a
    fine-tuned version samples as its parent did (the tiny parent is a score model: its
    predictor-corrector settings stand in for the shipped flow model's slope and clash)."""
    from _finetune_setup import campaign, write_config

    from matgen.generate import read_metadata

    parent = tmp_path / "parent"
    shutil.copytree(paired_ckpt, parent)
    doc = json.loads((parent / "model.json").read_text())
    chosen = {"langevin_step": 0.25, "corrector_steps": 2}
    assert all(doc["metadata"]["config"]["diffusion"].get(k) != v for k, v in chosen.items())
    doc["metadata"]["diffusion"].update(chosen)
    (parent / "model.json").write_text(json.dumps(doc))
    camp = campaign(write_config(tmp_path, toy_csv, parent, rounds=2, steps=2), toy_csv)
    camp.run(rounds=1)
    finetune_step(camp, 1)
    (rec,) = recorded_versions(camp.store)
    got = read_metadata(Path(rec["checkpoint"]))["diffusion"]
    assert {k: got[k] for k in chosen} == chosen
