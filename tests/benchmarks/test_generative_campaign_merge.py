"""The generative-campaign benchmark's results file: processes running other arms or seeds
with the same settings write one ``--out`` JSON, each write keeping the others' results."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
from _bench import load_benchmark

KEYS = ("hits_per_call", "hits", "distinct_hit_formulas", "distinct_hit_share", "novel_share",
        "new_composition_share", "valid_share", "stable_share", "window_share", "suspect_share")


def _res(hits: int) -> dict:
    gap = {"mean": 0.0, "mae": 0.1}
    return {**{k: 0.5 for k in KEYS}, "hits": hits, "hits_per_call": hits / 60,
            "exploitation_gap": {"e_above_hull": gap, "band_gap": gap}, "seconds": 1.0}


def _args(out, seeds: str, arms: str, **kw) -> Namespace:
    settings = {"rounds": 5, "labels": 60, "window": (1.0, 3.0), "judge": "composition",
                "oracle_fmax": 0.05, "oracle_steps": 150, **kw}
    return Namespace(out=out, seeds=seeds, arms=arms, note="", commands=[f"run {arms} {seeds}"],
                     superseded=None, **settings)


def test_merge_keeps_own_results_and_adds_the_others_in_order():
    gc = load_benchmark("generative_campaign")
    mine = {"F": {"1": {"hits": 3}}, "A": {"2": {"hits": 1}}}
    theirs = {"F": {"1": {"hits": 9}, "0": {"hits": 2}}, "D": {"0": {"hits": 5}}}
    out = gc.merge_per_seed(mine, theirs)
    assert out is mine and list(out) == ["A", "D", "F"] and list(out["F"]) == ["0", "1"]
    assert out["F"]["1"] == {"hits": 3} and out["F"]["0"] == {"hits": 2}  # own wins


def test_two_writers_of_one_out_file_keep_each_others_results(tmp_path):
    gc = load_benchmark("generative_campaign")
    out = tmp_path / "gc.json"
    ctx = {"judge": None}
    a = _args(out, "2", "A,B,C,D,E")
    f = _args(out, "0,1,2", "F")
    gc._write(a, ctx, {"A": {"2": _res(4)}, "E": {"2": _res(16)}}, 1.0)
    gc._write(f, ctx, {"F": {"0": _res(20)}, "D": {"2": _res(99)}}, 1.0)  # D 2: F's own
    gc._write(a, ctx, {"A": {"2": _res(4)}, "D": {"2": _res(18)}}, 1.0)
    got = json.loads(out.read_text())
    assert {a: list(s) for a, s in got["per_seed"].items()} == {
        "A": ["2"], "D": ["2"], "E": ["2"], "F": ["0"]}
    assert got["per_seed"]["D"]["2"]["hits"] == 18  # the writer's own result
    assert got["summary"]["F"]["hits_per_call_vs_D"] == 20 / 18
    assert got["commands"] == ["run A,B,C,D,E 2", "run F 0,1,2"]
    assert not [p.name for p in tmp_path.iterdir() if p.name != "gc.json"]  # no temp / lock
    other = _args(out, "0", "F", rounds=3)  # other settings: the file is not merged
    gc._write(other, ctx, {"F": {"0": _res(1)}}, 1.0)
    assert list(json.loads(out.read_text())["per_seed"]) == ["F"]


def test_summary_pairs_each_arm_with_d_over_their_common_seeds():
    gc = load_benchmark("generative_campaign")
    d = {str(k): {**_res(h), "distinct_hit_formulas": h} for k, h in enumerate([20, 19, 15, 20])}
    h = {str(k): {**_res(x), "distinct_hit_formulas": x - 1}
         for k, x in enumerate([22, 21, 18, 17, 30])}  # seed 4: no D pair
    got = gc.summarise({"D": d, "H": h})["H"]["paired_vs_D"]
    assert got["seeds"] == ["0", "1", "2", "3"]
    assert got["hits"]["diff"] == [2, 2, 3, -3] and got["hits"]["mean_diff"] == 1.0
    assert got["distinct_hit_formulas"]["diff"] == [1, 1, 2, -4]
    assert 0.3 < got["hits"]["t_test_p"] < 0.7  # scipy.stats.ttest_rel on these: 0.50
    assert 0.0 < got["hits"]["wilcoxon_p"] <= 1.0
    assert "paired_vs_D" not in gc.summarise({"D": d, "H": h})["D"]


def test_paired_over_two_files_joins_their_seeds_and_refuses_a_seed_twice(tmp_path):
    gc = load_benchmark("generative_campaign")
    cpu = {"D": {"0": _res(20), "1": _res(19)}, "H": {"0": _res(22), "1": _res(21)}}
    gpu = {"D": {"100": _res(15)}, "H": {"100": _res(18), "101": _res(30)}}
    a, b = tmp_path / "cpu.json", tmp_path / "gpu.json"
    a.write_text(json.dumps({"per_seed": cpu}))
    b.write_text(json.dumps({"per_seed": gpu}))
    got = gc.pooled_paired([a, b])
    assert got["seeds"] == ["0", "1", "100"] and got["hits"]["diff"] == [2, 2, 3]
    b.write_text(json.dumps({"per_seed": {"D": {"1": _res(1)}}}))
    with pytest.raises(SystemExit, match="seed 1"):
        gc.pooled_paired([a, b])
