"""benchmarks/csp_pair.py: two CSP per-structure tables side by side, precision on the rows
both match."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks._bench import load_benchmark


def _table(path, rms, extra=None):
    lines = ["material_id,sample_index,matched,rms_dist"]
    for i, r in enumerate(rms):
        lines.append(f"m-{i},0,{r is not None},{'' if r is None else r}")
    lines += extra or []
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_both_match_are_compared_apart_from_the_extra_ones(tmp_path, capsys):
    cp = load_benchmark("csp_pair")
    # a matches rows 0-3 (row 3 loosely, which b misses), b matches rows 0-2 and 4
    a = _table(tmp_path / "a.csv", [0.01, 0.02, 0.03, 0.4, None],
               extra=["m-0,1,True,0.9"])  # a second sample of row 0 is ignored
    b = _table(tmp_path / "b.csv", [0.02, 0.02, 0.05, None, 0.3, 0.1])  # m-5: b only
    assert cp.main([str(a), str(b), "--names", "new", "old", "--out",
                    str(tmp_path / "o.json")]) == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert json.loads(capsys.readouterr().out) == out
    assert out["rows"] == 5 and out["matched"] == {"new": 4, "old": 4}
    both = out["both_matched"]
    assert both["new"]["rows"] == both["old"]["rows"] == 3
    assert both["new"]["rmse"] == pytest.approx(0.02)  # matgen evaluate's: mean RMS
    assert both["old"]["rmse"] == pytest.approx(0.03)
    assert out["only_new"] == {"rows": 1, "rmse": 0.4}
    assert out["only_old"] == {"rows": 1, "rmse": 0.3}


def test_tables_of_other_rows_are_an_error(tmp_path, capsys):
    cp = load_benchmark("csp_pair")
    a = _table(tmp_path / "a.csv", [0.1])
    b = tmp_path / "b.csv"
    b.write_text("material_id,matched,rms_dist\nx-9,True,0.1\n")
    assert cp.main([str(a), str(b)]) == 1
    assert "share no material_id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cp.main([str(a), str(tmp_path / "missing.csv")])
    assert e.value.code == 2
