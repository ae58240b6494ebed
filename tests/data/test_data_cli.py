"""`matgen data validate` / `matgen data info` through Typer's CliRunner."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matgen.cli import app


def _load_corpus_module():
    """tests/crystal/malformed.py, loaded by path (the test folders are not packages)."""
    path = Path(__file__).resolve().parents[1] / "crystal" / "malformed.py"
    spec = importlib.util.spec_from_file_location("matgen_tests_malformed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_corpus = _load_corpus_module()
GOOD, csv_text, write_corpus = _corpus.GOOD, _corpus.csv_text, _corpus.write_corpus

runner = CliRunner()


def _run(*args):
    res = runner.invoke(app, list(args))
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


def test_help_lists_data_commands():
    res = _run("data", "--help")
    assert res.exit_code == 0 and "validate" in res.output and "info" in res.output


def test_every_malformed_file_exit_1_with_reason(corpus, monkeypatch):
    monkeypatch.setenv("MATGEN_NUM_WORKERS", "1")
    folder, cases = corpus
    for name, reason, args in cases:
        res = _run("data", "validate", str(folder / name), *args)
        assert res.exit_code == 1, (name, res.output)
        assert reason in res.output, (name, reason, res.output)
        assert f"bad {name}" in res.output, res.output


def test_folder_report_and_counts(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_NUM_WORKERS", "1")
    folder, cases = corpus
    report = tmp_path / "bad_rows.csv"
    res = _run("data", "validate", str(folder), "--report", str(report))
    assert res.exit_code == 1
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"entry", "reason"}
    assert all(r["reason"] for r in rows)
    named = {r["entry"].split(":")[0] for r in rows}
    assert {n for n, _, a in cases if not a} <= named
    assert f"bad: {len(rows)}" in res.output


def test_good_file_exit_0(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_NUM_WORKERS", "1")
    p = tmp_path / "ok.csv"
    p.write_text(csv_text([("mp-1", "1.0", GOOD), ("mp-2", "2.0", GOOD)]))
    res = _run("data", "validate", str(p))
    assert res.exit_code == 0, res.output
    assert "good: 2" in res.output and "bad: 0" in res.output
    # --max-atoms turns it bad; --min-distance 3.0 too (Na-Cl is 3.46 Å, Na-Na image 4 Å)
    assert _run("data", "validate", str(p), "--max-atoms", "1").exit_code == 1
    assert _run("data", "validate", str(p), "--min-distance", "3.0").exit_code == 0
    assert _run("data", "validate", str(p), "--min-distance", "3.5").exit_code == 1


def test_usage_errors_exit_2(tmp_path):
    assert _run("data", "validate", str(tmp_path / "missing.csv")).exit_code == 2
    assert _run("data", "validate").exit_code == 2
    assert _run("data", "validate", str(tmp_path), "--max-atoms", "zero").exit_code == 2
    assert _run("data", "info", "nosuchdataset").exit_code == 2


def test_info_on_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MATGEN_NUM_WORKERS", "1")
    p = tmp_path / "ok.csv"
    p.write_text(csv_text([("mp-1", "1.0", GOOD), ("mp-2", "3.0", GOOD), ("mp-3", "x", "bad")]))
    res = _run("data", "info", str(p))
    assert res.exit_code == 0, res.output
    assert "crystals: 2" in res.output and "skipped: 1" in res.output
    assert "band_gap" in res.output and "Na 2" in res.output
    res = _run("data", "info", str(p), "--json")
    import json

    out = json.loads(res.output)
    assert out["crystals"] == 2 and out["properties"]["band_gap"]["mean"] == 2.0
    assert out["atoms_per_cell"] == {"2": 2}


def test_info_on_a_registry_name_with_split_fallback(tmp_path, monkeypatch):
    root = tmp_path / "data" / "carbon_24"
    root.mkdir(parents=True)
    (root / "val.csv").write_text(csv_text([("c-1", "1.0", GOOD), ("c-2", "2.0", GOOD)]))
    monkeypatch.setenv("MATGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MATGEN_NUM_WORKERS", "1")
    res = runner.invoke(app, ["data", "info", "carbon24"])
    assert res.exit_code == 0, res.output
    assert "using the val split" in res.output and "crystals: 2" in res.output
    res = _run("data", "validate", "carbon24", "--split", "val")
    assert res.exit_code == 0 and "good: 2" in res.output and "val.csv" in res.output
    assert _run("data", "validate", "carbon24", "--split", "test").exit_code == 2


@pytest.mark.slow
def test_validate_accounts_for_every_mp20_train_row(datasets_dir):
    import re

    res = _run("data", "validate", str(datasets_dir / "mp20_reduced" / "train.csv"), "-q")
    m = re.search(r"(\d+) entries, good: (\d+)\s+bad: (\d+)", res.output)
    assert m is not None, res.output
    total, good, bad = map(int, m.groups())
    assert total == 9894 and good + bad == 9894
    assert res.exit_code == (1 if bad else 0)
