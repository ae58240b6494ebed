"""benchmarks/conditional_hit_rate.py end to end on the tiny checkpoint (a few samples)."""

from __future__ import annotations

import importlib.util
import json

from _cond_data import REPO


def test_benchmark_writes_consistent_table(cond_workdir, pretrained, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "cond_hit_rate_bench", REPO / "benchmarks" / "conditional_hit_rate.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = cond_workdir / "hr.json"
    monkeypatch.setattr("sys.argv", [
        "conditional_hit_rate.py", "--checkpoint", str(pretrained), "--num", "3",
        "--num-uncond", "4", "--steps", "3", "--windows", "0:1,1:3", "--device", "cpu",
        "--chemsys", "Li-O", "--train-csv", str(cond_workdir / "missing.csv"), "--out", str(out),
    ])
    mod.main()
    d = json.loads(out.read_text())
    assert [(r["window"], r["strategy"]) for r in d["windows"]] == [
        ([0.0, 1.0], "uniform"), ([0.0, 1.0], "midpoint"),
        ([1.0, 3.0], "uniform"), ([1.0, 3.0], "midpoint"),
    ]
    assert [r["condition"] for r in d["windows"]] == [
        "band_gap=0:1", "band_gap=0.5", "band_gap=1:3", "band_gap=2"]
    for r in d["windows"]:
        assert r["num_total"] == 3 and 0 <= r["hits"] <= r["num_valid"] <= 3
        assert r["train_rate"] is None
    assert d["unconditional"]["num"] == 4
    assert d["chemsys"]["adherence"] == 1.0 and d["chemsys"]["num"] == 3
    assert d["better_strategy"] in ("uniform", "midpoint")
    assert d["judge"]["predictor"] == "matgen/assets/predictors/band_gap"
