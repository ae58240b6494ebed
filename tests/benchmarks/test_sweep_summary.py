"""benchmarks/sweep_summary.py: val CSP pooled over seeds (RMSE weighted by matched rows), de
novo averaged over seeds, test scores per value, and a one-line error for an empty folder."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks._bench import load_benchmark


def _put(folder, name, **metrics):
    (folder / f"{name}.json").write_text(json.dumps(metrics))


def test_pools_csp_and_averages_de_novo_per_value(tmp_path):
    _put(tmp_path, "csp_val_k0.7_s0", match_rate=0.5, rmse=0.1, num_matched=50,
         num_references=100)
    _put(tmp_path, "csp_val_k0.7_s1", match_rate=0.3, rmse=0.2, num_matched=30,
         num_references=100)
    _put(tmp_path, "gen_val_k0.7_s0", comp_valid=0.8, struct_valid=1.0, wdist_density=0.2)
    _put(tmp_path, "gen_val_k0.7_s1", comp_valid=0.9, struct_valid=0.99, wdist_density=0.4)
    _put(tmp_path, "gen_test_k0_s0", comp_valid=0.7)
    _put(tmp_path, "csp_train_k0.7_s0", match_rate=0.7, num_matched=70, num_references=100)
    _put(tmp_path, "notes", x=1)  # not a sweep file: ignored
    summary, per_file = load_benchmark("sweep_summary").summarise(tmp_path)
    csp = summary["0.7"]["val_csp_pooled"]
    assert csp["num_matched"] == 80 and csp["match_rate"] == pytest.approx(0.4)
    assert csp["rmse"] == pytest.approx((0.1 * 50 + 0.2 * 30) / 80)
    gen = summary["0.7"]["val_gen_mean_2_seeds"]
    assert gen["comp_valid"] == pytest.approx(0.85) and gen["wdist_density"] == pytest.approx(0.3)
    assert summary["0"]["test_gen_seed0"] == {"comp_valid": 0.7}
    assert summary["0.7"]["train_csp_seed0"]["num_matched"] == 70  # recall on training rows
    assert "notes" not in per_file and len(per_file) == 6


def test_an_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no sweep metrics"):
        load_benchmark("sweep_summary").main([str(tmp_path), "--out", str(tmp_path / "o.json")])
