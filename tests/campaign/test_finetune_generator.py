"""generator.finetune: the generator learns from the labels as a versioned, resumable step."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from matgen.campaign import load_config
from matgen.campaign._finetune import (
    _record,
    finetune_step,
    recorded_versions,
    version_for_round,
)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, toy_csv):
    from _finetune_setup import tiny_checkpoint

    d = tmp_path_factory.mktemp("ft_ckpt")
    mp = pytest.MonkeyPatch()
    mp.setenv("MATGEN_CACHE_DIR", str(d / "cache"))
    yield tiny_checkpoint(d, toy_csv)
    mp.undo()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))


def test_finetune_records_a_version_that_the_next_round_generates_with(
    tmp_path, toy_csv, tiny_ckpt, cache
):
    from _finetune_setup import campaign, write_config

    camp = campaign(write_config(tmp_path, toy_csv, tiny_ckpt, rounds=2), toy_csv)
    camp.run(rounds=1)
    assert recorded_versions(camp.store) == []
    finetune_step(camp, 1)
    (rec,) = recorded_versions(camp.store)
    assert rec["round_index"] == 1 and rec["version"] == "ft-r001"
    assert rec["details"]["hits"] == 2  # round 0's batch, both hits
    assert rec["details"]["replay_rows"] == 2  # replay 0.5: as many rows as hits
    folder = Path(rec["checkpoint"])
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    from matgen.generate import read_metadata, resolve_checkpoint

    # de novo atom counts and lattice prior stay the parent's, not the 4-row fine-tuning set's
    assert read_metadata(folder)["stats"] == read_metadata(resolve_checkpoint(tiny_ckpt))["stats"]
    assert not (folder.parent / "_runs" / "round_0001").exists()
    finetune_step(camp, 1)  # done already: nothing new
    assert len(recorded_versions(camp.store)) == 1
    assert camp.generator.version == "ft-r001"
    camp.run(rounds=2)
    versions = [r["generator_version"] for r in camp.store.rounds()]
    assert versions == ["dataset:toy.csv", "ft-r001"]
    m = camp.store.round(1)["metrics"]["generator"]
    assert m["version"] == "ft-r001" and m["finetuned"]["hits"] == 2

    import pandas as pd

    from matgen.campaign import export_campaign

    folder = export_campaign(camp.store, tmp_path / "export", camp.cfg.property_names())
    df = pd.read_csv(folder / "candidates.csv")
    want = {"r000": "dataset:toy.csv", "r001": "ft-r001"}  # ids are ft-rNNN-position
    got = {(i.split("-")[1], v) for i, v in zip(df["id"], df["generator_version"], strict=True)}
    assert len(df) == 4 and all(want[r] == v for r, v in got)
    assert "ft-r001" in (folder / "report.html").read_text()  # the rounds table names it


def test_diversity_guard_backs_off_and_stops(tmp_path, toy_csv, tiny_ckpt, cache):
    from _finetune_setup import campaign, write_config
    from pymatgen.core import Lattice, Structure

    camp = campaign(write_config(tmp_path, toy_csv, tiny_ckpt, rounds=4,
                                 min_distinct_share=0.5), toy_csv)
    camp.store.ensure_round(1, 0)
    _record(camp.store, 1, version="ft-r001", checkpoint=str(tiny_ckpt), parent="base",
            details={})
    nacl = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            for a in (3.0, 3.1, 3.2, 3.3)]
    camp.commit_generated(1, [[{"source_id": f"n{i}", "cif": s.to(fmt="cif")}
                               for i, s in enumerate(nacl)]])  # one formula in 4: share 0.25
    camp.store.ensure_round(2, 0)
    finetune_step(camp, 2)
    rec = version_for_round(camp.store, 2)
    assert rec["round_index"] == 2 and rec["checkpoint"] is None  # back to the configured one
    assert rec["details"]["stopped"] and rec["details"]["distinct_share"] == 0.25
    assert "diversity guard" in rec["details"]["guard"]
    camp.store.ensure_round(3, 0)
    finetune_step(camp, 3)  # stopped: no more fine-tuning
    assert [r["round_index"] for r in recorded_versions(camp.store)] == [1, 2]
    assert camp.generator.version == rec["version"] != "ft-r001"


def test_sigkill_during_finetune_resumes_with_one_version_and_all_labels(
    tmp_path, toy_csv, tiny_ckpt, monkeypatch
):
    from _finetune_setup import run_killer, write_config

    from matgen.campaign import Campaign

    config = write_config(tmp_path, toy_csv, tiny_ckpt, rounds=2, steps=4)
    cache_dir = tmp_path / "cache"
    assert run_killer(config, toy_csv, "mid_train", cache_dir) == -signal.SIGKILL
    runs = tmp_path / "work" / "generator" / "_runs" / "round_0001" / "checkpoints"
    assert any(runs.glob("step_*")), "killed before the fine-tuning run wrote a checkpoint"
    assert run_killer(config, toy_csv, "before_record", cache_dir) == -signal.SIGKILL
    assert (tmp_path / "work" / "generator" / "round_0001" / "model.safetensors").is_file()
    assert recorded_versions(Campaign(load_config(config)).store) == []  # folder, no record

    from _finetune_setup import campaign

    monkeypatch.setenv("MATGEN_CACHE_DIR", str(cache_dir))  # the resumed run, in this process
    campaign(config, toy_csv).run()
    camp = Campaign(load_config(config))
    rounds = camp.store.rounds()
    assert [r["status"] for r in rounds] == ["reported", "reported"]
    (rec,) = recorded_versions(camp.store)  # one version for round 1, none twice
    assert rec["round_index"] == 1 and rounds[1]["generator_version"] == rec["version"]
    assert rec["details"]["steps"] == 4
    subs = camp.store.submissions()
    labels = camp.store.labels()
    assert len(subs) == 4 and all(s["candidate_id"] in labels for s in subs)
    kept = [p.name for p in (tmp_path / "work" / "generator").iterdir()
            if not p.name.startswith(".")]
    assert sorted(kept) == ["round_0001"]


def _fill_yaml(config: Path, **finetune) -> Path:
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw["generator"]["finetune"].update(finetune)
    config.write_text(yaml.safe_dump(raw))
    return config


def test_replay_fill_set_has_steps_times_batch_rows_and_distinct_replay(tmp_path, toy_csv):
    from types import SimpleNamespace

    from _finetune_setup import write_config

    from matgen.campaign._finetune import _training_rows

    hits = [{"id": f"h{i}", "cif": f"cif{i}", "labels": {"band_gap": 2.0},
             "scores": {"e_above_hull": 0.01}} for i in range(3)]
    names = ["band_gap", "e_above_hull"]

    def rows(**ft):
        config = _fill_yaml(write_config(tmp_path, toy_csv, tmp_path / "ckpt"), **ft)
        got, n_hit = _training_rows(SimpleNamespace(cfg=load_config(config)), 1, hits, names)
        assert all(r["material_id"].split("~")[0] in {"h0", "h1", "h2"} for r in got[:n_hit])
        assert not any(r["material_id"].startswith("h") for r in got[n_hit:])
        return got

    plain = rows(steps=10, batch_size=8)  # default: the hits + as many replayed rows
    assert [r["material_id"] for r in plain[:3]] == ["h0", "h1", "h2"] and len(plain) == 6
    got = rows(steps=10, batch_size=8, replay_fill=True)
    assert len(got) == 80
    ids = [r["material_id"] for r in got]
    assert len(set(ids)) == 80  # repeats carry their own ids: the data reader keeps them all
    base = [i.split("~r")[0] for i in ids]
    assert sorted(base.count(f"h{i}") for i in range(3)) == [13, 13, 14]  # 40 rows, even
    assert ids[:4] == ["h0", "h1", "h2", "h0~r1"]
    replay = ids[40:]
    assert len(set(replay)) == 40 and all(i.startswith("toy-") for i in replay)
    assert got[0]["band_gap"] == 2.0 and got[0]["e_above_hull"] == 0.01
    assert rows(steps=10, batch_size=8, replay_fill=True) == got  # the round's seed: same draw
    quarter = [r["material_id"] for r in rows(steps=10, batch_size=8, replay=0.25,
                                               replay_fill=True)]
    assert len(quarter) == 80 and sum(i.startswith("h") for i in quarter) == 60
    capped = [r["material_id"] for r in rows(steps=30, batch_size=8, replay_fill=True)]
    assert len(capped) == 120 + 98 and len(set(capped[120:])) == 98  # the whole 98-row CSV


def test_replay_fill_finetune_records_hit_and_replay_rows(
    tmp_path, toy_csv, tiny_ckpt, cache, caplog
):
    import logging

    from _finetune_setup import campaign, write_config

    config = _fill_yaml(write_config(tmp_path, toy_csv, tiny_ckpt, rounds=2, steps=2),
                        replay_fill=True, batch_size=4)
    camp = campaign(config, toy_csv)
    camp.run(rounds=1)
    with caplog.at_level(logging.WARNING):
        finetune_step(camp, 1)
    assert "duplicate id" not in caplog.text  # the repeated hits reach the training set
    (rec,) = recorded_versions(camp.store)
    d = rec["details"]
    assert d["hits"] == 2 and d["replay_fill"] is True  # 2 x 4 = 8 rows, replay 0.5
    assert d["hit_rows"] == 4 and d["replay_rows"] == 4 and d["steps"] == 2


class _HalfHitOracle:
    """Labels the first candidate of each batch a hit, the others far off the windows."""

    name = "half-hit-oracle"
    synchronous = True

    def request(self, candidates, round_index):
        return {c["id"]: ({"band_gap": 2.0, "e_above_hull": 0.0} if i == 0 else
                          {"band_gap": 0.1, "e_above_hull": 0.4})
                for i, c in enumerate(candidates)}


@pytest.mark.parametrize("rows", ["hits", "labelled"])
def test_finetune_rows_hits_or_every_labelled_candidate_with_its_labels(
    tmp_path, toy_csv, tiny_ckpt, cache, rows, monkeypatch
):
    import pandas as pd
    from _finetune_setup import HitScorer, write_config

    from matgen.campaign import Campaign, DatasetGenerator

    config = _fill_yaml(write_config(tmp_path, toy_csv, tiny_ckpt, rounds=2, steps=2),
                        rows=rows)
    camp = Campaign(load_config(config), generator=DatasetGenerator(toy_csv), scorer=HitScorer(),
                    oracle=_HalfHitOracle())
    camp.run(rounds=1)
    csv = camp.cfg.work_path() / "generator" / "_runs" / "round_0001" / "finetune.csv"
    seen = {}
    import matgen.campaign._finetune as ftmod

    real = ftmod._train_version

    def spy(camp_, index, found, parent):  # the run folder goes once the version is recorded
        out = real(camp_, index, found, parent)
        seen["csv"] = pd.read_csv(csv)
        return out

    monkeypatch.setattr(ftmod, "_train_version", spy)
    finetune_step(camp, 1)
    (rec,) = recorded_versions(camp.store)
    labelled = set(camp.store.labels())
    assert len(labelled) == 2 and rec["details"]["hits"] == 1
    own = seen["csv"][seen["csv"]["material_id"].isin(labelled)]
    if rows == "hits":
        assert len(own) == 1 and own["band_gap"].tolist() == [2.0]
        assert "labelled" not in rec["details"]
    else:  # the non-hit trains too, conditioned on its own labels
        assert rec["details"]["rows"] == "labelled" and rec["details"]["labelled"] == 2
        assert sorted(own["band_gap"]) == [0.1, 2.0]
        assert sorted(own["e_above_hull"]) == [0.0, 0.4]


class _SuspectHitOracle:
    """Labels every candidate a hit; the first of each batch far below the known hull."""

    name = "suspect-hit-oracle"
    synchronous = True

    def request(self, candidates, round_index):
        return {c["id"]: {"band_gap": 2.0, "e_above_hull": -0.2 if i == 0 else 0.0}
                for i, c in enumerate(candidates)}


@pytest.mark.parametrize("skip", [False, True])
def test_finetune_skip_suspects_leaves_out_hits_below_the_known_hull(
    tmp_path, toy_csv, tiny_ckpt, cache, skip
):
    from _finetune_setup import HitScorer, write_config

    from matgen.campaign import Campaign, DatasetGenerator
    from matgen.campaign._finetune import _labelled_rows

    config = _fill_yaml(write_config(tmp_path, toy_csv, tiny_ckpt, rounds=2, steps=2),
                        skip_suspects=skip)
    camp = Campaign(load_config(config), generator=DatasetGenerator(toy_csv), scorer=HitScorer(),
                    oracle=_SuspectHitOracle())
    camp.run(rounds=1)
    rows = _labelled_rows(camp, skip_suspects=skip)
    assert all(r["hit"] for r in rows)
    assert sorted(r["labels"]["e_above_hull"] for r in rows) == ([0.0] if skip else [-0.2, 0.0])
    finetune_step(camp, 1)
    (rec,) = recorded_versions(camp.store)
    assert rec["details"]["hits"] == (1 if skip else 2)
    assert rec["details"].get("skip_suspects", False) is skip
