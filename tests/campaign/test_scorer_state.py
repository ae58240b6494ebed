"""The scorer's learning state survives a restart (issue 20, chaos test): a campaign stopped
after a round and resumed in a new process scores and records the same model versions as an
uninterrupted one; a state saved for a round the store never recorded as updated is ignored."""

from __future__ import annotations

import json

import pytest
from _toy import write_toy_config

from matgen.campaign import Campaign, load_config
from matgen.campaign._components import (
    DatasetScorer,
    load_scorer_state,
    save_scorer_state,
)


def _versions(cfg_path):
    camp = Campaign(load_config(cfg_path))
    try:
        return [(r["index"], r["model_version"]) for r in camp.store.rounds()]
    finally:
        camp.store.dispose()


def test_a_resumed_campaign_records_the_same_model_versions(tmp_path, toy_csv):
    (tmp_path / "ref").mkdir()
    ref = write_toy_config(tmp_path / "ref", toy_csv, rounds=2)
    Campaign(load_config(ref)).run()
    (tmp_path / "cut").mkdir()
    cut = write_toy_config(tmp_path / "cut", toy_csv, rounds=2)
    Campaign(load_config(cut)).run(rounds=1)  # stopped after round 0
    Campaign(load_config(cut)).run()  # resumed with a fresh scorer, as a new process has
    want = _versions(ref)
    assert [v for _, v in want] == [f"dataset-scorer:{toy_csv.name}+al{i}" for i in (1, 2)]
    assert _versions(cut) == want
    saved = sorted(p.name for p in (tmp_path / "cut" / "work" / "scorer_state").iterdir())
    assert saved == ["round_0000", "round_0001"]


def test_only_recorded_rounds_are_loaded_and_saving_replaces_whole(tmp_path, toy_csv):
    root = tmp_path / "state"
    sc = DatasetScorer(toy_csv, ["band_gap"], {})
    for i in range(3):
        sc.update([], [])
        save_scorer_state(sc, root, i)
    sc.update([], [])
    save_scorer_state(sc, root, 2)  # an update redone after a kill: replaced, not merged
    assert json.loads((root / "round_0002" / "scorer.json").read_text())["updates"] == 4
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    fresh = DatasetScorer(toy_csv, ["band_gap"], {})
    assert load_scorer_state(fresh, root, None) is None and fresh.updates == 0
    assert load_scorer_state(fresh, root, 1) == 1 and fresh.updates == 2
    assert fresh.model_version.endswith("+al2")
    assert load_scorer_state(fresh, root, 7) == 2 and fresh.updates == 4
    (root / "round_0002" / "scorer.json").write_text("{trunc")
    with pytest.raises(ValueError, match="round_0002: scorer learning state unreadable"):
        load_scorer_state(fresh, root, 2)


def test_a_scorer_without_state_methods_is_left_alone(tmp_path):
    class Plain:
        model_version = "x"

    assert save_scorer_state(Plain(), tmp_path / "s", 0) is None
    assert load_scorer_state(Plain(), tmp_path / "s", 0) is None
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # ~20 s on 2 shared cores: loads the shipped predictors twice and refits
def test_the_surrogate_scorer_keeps_its_refitted_predictors(tmp_path):
    """The real scorer's state: predictors refitted on oracle labels come back bit for bit."""
    from pymatgen.core import Lattice, Structure

    from matgen.campaign._components import SurrogateScorer

    structs = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
               for a in (5.4, 5.6, 5.8, 6.0, 6.2)]
    labels = [{"band_gap": 4.0 + 0.1 * i, "formation_energy_per_atom": -2.0} for i in range(5)]
    a = SurrogateScorer(relax=False)
    before = a.predictors[0].predict(structs).mean.copy()
    a.update(structs, labels)
    after = a.predictors[0].predict(structs).mean
    assert not (after == before).all() and a.model_version.endswith("+al1")
    save_scorer_state(a, tmp_path, 0)
    b = SurrogateScorer(relax=False)
    assert load_scorer_state(b, tmp_path, 0) == 0
    assert b.model_version == a.model_version and b.updates == 1
    assert (b.predictors[0].predict(structs).mean == after).all()


def test_the_surrogate_scores_keep_the_relaxed_structure():
    """The lab export and the oracles use ``relaxed_cif``: the scorer's adapter must pass it on
    (it once kept only numbers, so the export's CIFs were the generated, unrelaxed crystals)."""
    from matgen.campaign._components import surrogate_row

    row = surrogate_row({"e_above_hull": 0.01, "suspect": False, "ood_score": 0.2,
                         "relaxed_cif": "data_x\n", "formula": "NaCl", "error": ""})
    assert row == {"e_above_hull": 0.01, "suspect": 0.0, "ood_score": 0.2, "ood": 0.2,
                   "ood_flag": 0.0, "relaxed_cif": "data_x\n"}
    failed = surrogate_row({"e_above_hull": float("nan"), "relaxed_cif": "", "error": "boom"})
    assert failed["error"] == "boom" and "relaxed_cif" not in failed and failed["ood_flag"] == 1.0
