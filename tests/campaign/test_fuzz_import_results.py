"""Property-based fuzzing (hypothesis) of `campaign import-results` (issue 20): any results
CSV (columns misspelled or missing, ids unknown or repeated, values empty, NaN, inf, 1e308,
text; quotes, BOM, NUL, cut lines) is imported or rejected with one-line reasons, never an
exception; no stored label is non-finite and no candidate is closed without a value."""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from matgen.campaign import Campaign, load_config
from matgen.campaign._results import ResultsFileError
from matgen.cli import app

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def waiting(tmp_path_factory, toy_csv):
    """A lab campaign whose round 0 waits for results, and a pristine copy of its state."""
    from _toy import write_toy_config

    d = tmp_path_factory.mktemp("fuzzimp")
    path = write_toy_config(d, toy_csv, name="fz", oracle="lab", rounds=1)
    camp = Campaign(load_config(path))
    assert camp.run()[0]["status"] == "submitted"
    work = camp.cfg.work_path()
    camp.store.dispose()
    ids = [r["candidate_id"] for r in csv.DictReader(
        (work / "outbox" / "round_000" / "request.csv").open())]
    shutil.copy(work / "state.db", d / "pristine.db")
    return path, ids, work, d / "pristine.db"


_COLS = st.lists(st.sampled_from(["candidate_id", "band_gap", "e_above_hull", "band_gpa",
                                  "", "notes", "Band_Gap", "candidate_id"]),
                 min_size=1, max_size=4)
_VALUES = st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e308", "1e400", "-1e308", "2.0",
                           "0.01", "abc", " 3 ", "1,5", '"2"', "0", "-0.5", "None"])
_GARBAGE = st.sampled_from(["", "\ufeff", "\x00", '"', "\r", ",,,", "\n\n", "#x\n"])


@st.composite
def result_files(draw, ids):
    cols = draw(_COLS)
    ident = st.one_of(st.sampled_from(ids), st.sampled_from(["", "nope", ids[0] + " "]))
    rows = draw(st.lists(st.lists(st.one_of(ident, _VALUES), min_size=len(cols) - 1,
                                  max_size=len(cols) + 1), max_size=5))
    text = ",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    cut = draw(st.integers(0, len(text)))
    return draw(_GARBAGE) + text[:cut] + draw(_GARBAGE) + text[cut:]


def _invariants(path) -> None:
    camp = Campaign(load_config(path))
    try:
        labels = camp.store.labels()
        for lab in labels.values():
            assert lab and all(v is not None and math.isfinite(v) for v in lab.values()), lab
        for s in camp.store.submissions():
            if s["status"] == "done":
                assert s["candidate_id"] in labels, s
    finally:
        camp.store.dispose()


@FUZZ
@given(st.data())
def test_any_results_file_is_imported_or_rejected_in_one_line(waiting, data):
    path, ids, work, pristine = waiting
    shutil.copy(pristine, work / "state.db")
    text = data.draw(result_files(ids))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "res.csv"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        camp = Campaign(load_config(path))
        try:
            rep = camp.import_results(str(p))
        except ResultsFileError as e:
            assert str(e) and "\n" not in str(e), repr(str(e))
        else:
            for err in rep.errors:
                assert err and "\n" not in err and "Traceback" not in err, repr(err)
        finally:
            camp.store.dispose()
    _invariants(path)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_import_results_cli_exits_0_1_or_2(waiting, data):
    path, ids, work, pristine = waiting
    shutil.copy(pristine, work / "state.db")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "res.csv"
        p.write_text(data.draw(result_files(ids)), encoding="utf-8", errors="surrogatepass")
        res = CliRunner().invoke(app, ["campaign", "import-results", "--config", str(path),
                                       "--csv", str(p)])
    assert res.exit_code in (0, 1, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    _invariants(path)
