"""`campaign import-results` never closes a candidate without a finite value (issue 20, item 1).

Every bad file or row is named in one line with its reason (exit 1); nothing of a rejected row
is stored; the real results are accepted afterwards; a correction needs --correct and leaves an
audit trail.
"""

from __future__ import annotations

import csv
import math

import pytest
from typer.testing import CliRunner

from matgen.campaign import Campaign, load_config
from matgen.cli import app


@pytest.fixture()
def waiting(tmp_path, toy_csv):
    """A lab campaign whose round 0 waits for results: (config path, candidate ids)."""
    from _toy import write_toy_config

    path = write_toy_config(tmp_path, toy_csv, name="imp", oracle="lab", rounds=1)
    camp = Campaign(load_config(path))
    assert camp.run()[0]["status"] == "submitted"
    req = camp.cfg.work_path() / "outbox" / "round_000" / "request.csv"
    ids = [r["candidate_id"] for r in csv.DictReader(req.open())]
    return path, ids, req


def _imp(path, csv_path, *extra):
    return CliRunner().invoke(app, ["campaign", "import-results", "--config", str(path),
                                    "--csv", str(csv_path), *extra])


def _nothing_closed(path) -> None:
    camp = Campaign(load_config(path))
    assert {s["status"] for s in camp.store.submissions()} == {"sent"}
    assert camp.store.labels() == {}
    assert camp.store.rounds()[0]["status"] == "submitted"


def _write(tmp_path, text: str, name: str = "res.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unfilled_request_is_rejected_row_by_row_then_real_results_accepted(waiting, tmp_path):
    path, ids, req = waiting
    res = _imp(path, req)
    assert res.exit_code == 1, res.output
    for i in ids:  # every row named with its line and id
        assert f"{i}: no value for band_gap, e_above_hull (an unfilled request?)" in res.output
    assert "accepted 0 rows, rejected 3" in res.output and "Traceback" not in res.output
    _nothing_closed(path)
    good = _write(tmp_path, "candidate_id,band_gap,e_above_hull\n"
                  + "".join(f"{i},2.0,0.01\n" for i in ids))
    res = _imp(path, good)
    assert res.exit_code == 0 and "accepted 3 rows, rejected 0" in res.output
    camp = Campaign(load_config(path))
    assert camp.run()[0]["status"] == "reported"
    assert camp.store.rounds()[0]["metrics"]["hits"] == 3
    res = _imp(path, good)  # importing the same file again changes nothing and is no error
    assert res.exit_code == 0 and "3 unchanged, rejected 0" in res.output


def test_misspelled_property_column_rejects_the_whole_file(waiting, tmp_path):
    path, ids, _ = waiting
    bad = _write(tmp_path, "candidate_id,band_gpa,e_above_hull\n"
                 + "".join(f"{i},2.0,0.01\n" for i in ids))
    res = _imp(path, bad)
    assert res.exit_code == 1
    assert res.output.count("\n") == 1, res.output  # one line
    assert "unknown column 'band_gpa' (did you mean 'band_gap'?)" in res.output
    _nothing_closed(path)


@pytest.mark.parametrize(
    ("row", "reason"),
    [("{i},2.0\n", "2 fields, the header has 3"),
     ("{i},inf,0.01\n", "band_gap=inf is not a finite number"),
     ("{i},-Infinity,0.01\n", "band_gap=-Infinity is not a finite number"),
     ("{i},1e308,0.01\n", "band_gap=1e308 is out of range"),
     ("{i},nan,\n", "band_gap=nan is not a finite number"),
     ("{i},NaN,0.01\n", "band_gap=NaN is not a finite number"),
     ("{i},abc,0.01\n", "band_gap='abc' is not a number"),
     ("{i},,\n", "no value for band_gap, e_above_hull"),
     ("{i},1.0,0.01,7\n", "4 fields, the header has 3"),
     (",1.0,0.01\n", "empty candidate_id")],
)
def test_bad_rows_are_named_and_never_close_the_candidate(waiting, tmp_path, row, reason):
    path, ids, _ = waiting
    bad = _write(tmp_path, "candidate_id,band_gap,e_above_hull\n" + row.format(i=ids[0]))
    res = _imp(path, bad)
    assert res.exit_code == 1 and reason in res.output, res.output
    assert f"res.csv:2: {ids[0] if not row.startswith(',') else '(no candidate_id)'}" \
        in res.output
    _nothing_closed(path)


def test_duplicates_unknown_and_unsent_ids(waiting, tmp_path):
    path, ids, _ = waiting
    camp = Campaign(load_config(path))
    unsent = next(c["id"] for c in camp.store.candidates() if not c["selected"])
    text = ("candidate_id,band_gap,e_above_hull,notes\n"
            f"{ids[0]},2.0,0.01,first\n"
            f"{ids[0]},2.5,0.01,second measurement\n"  # conflicting: neither imported
            f"{ids[1]},1.5,0.02,\n"
            f"{ids[1]},1.5,0.02,\n"  # identical duplicate: imported once
            f"nobody,1.0,0.0,\n"
            f"{unsent},1.0,0.0,\n")
    res = _imp(path, _write(tmp_path, text))
    assert res.exit_code == 1
    assert f"res.csv:2: {ids[0]}: conflicting values on lines 2, 3 (none imported)" in res.output
    assert "res.csv:6: nobody: no such candidate" in res.output
    assert f"res.csv:7: {unsent}: never sent to the oracle" in res.output
    assert "accepted 1 rows, rejected 3" in res.output
    subs = {s["candidate_id"]: s["status"] for s in Campaign(load_config(path)).store
            .submissions()}
    assert subs == {ids[0]: "sent", ids[1]: "done", ids[2]: "sent"}


def test_file_level_problems_are_one_line(waiting, tmp_path):
    path, _ids, _ = waiting
    cases = {
        "": "empty file",
        "id,band_gap\nx,1\n": "needs a candidate_id column",
        "candidate_id,formula\nx,NaCl\n": "no property column",
        "candidate_id,band_gap,band_gap\nx,1,1\n": "band_gap appear more than once",
    }
    for text, reason in cases.items():
        res = _imp(path, _write(tmp_path, text))
        assert res.exit_code == 1 and reason in res.output, (text, res.output)
        assert res.output.count("\n") == 1
    p = tmp_path / "latin1.csv"
    p.write_bytes("candidate_id,band_gap\nk\xf6,1\n".encode("latin-1"))
    res = _imp(path, p)
    assert res.exit_code == 1 and "cannot read as a UTF-8 CSV" in res.output
    res = _imp(path, tmp_path / "missing.csv")
    assert res.exit_code == 2 and "no such file" in res.output
    _nothing_closed(path)


def test_partial_row_then_fill_then_correction_with_audit_trail(waiting, tmp_path):
    path, ids, _ = waiting
    first = _write(tmp_path, "candidate_id,band_gap,e_above_hull\n"
                   + "".join(f"{i},2.0,\n" for i in ids), "a.csv")
    res = _imp(path, first)
    assert res.exit_code == 0 and "accepted 3 rows" in res.output
    fill = _write(tmp_path, f"candidate_id,e_above_hull\n{ids[0]},0.02\n", "b.csv")
    res = _imp(path, fill)
    assert res.exit_code == 0 and "1 filled in" in res.output
    wrong = _write(tmp_path, f"candidate_id,band_gap\n{ids[0]},2.7\n", "c.csv")
    res = _imp(path, wrong)
    assert res.exit_code == 1
    assert f"{ids[0]}: already labelled band_gap=2 (file: 2.7); re-import with --correct" \
        in res.output
    camp = Campaign(load_config(path))
    assert camp.store.labels()[ids[0]]["band_gap"] == 2.0
    res = _imp(path, wrong, "--correct", "--reason", "re-measured, sample 4b")
    assert res.exit_code == 0 and "1 corrected" in res.output
    assert camp.store.labels()[ids[0]] == {"band_gap": 2.7, "e_above_hull": 0.02}
    hist = [(h["name"], h["old_value"], h["new_value"], h["action"])
            for h in camp.store.label_history(ids[0])]
    assert hist == [("band_gap", None, 2.0, "import"), ("e_above_hull", None, 0.02, "fill"),
                    ("band_gap", 2.0, 2.7, "correct")]
    assert "re-measured, sample 4b" in camp.store.label_history(ids[0])[-1]["detail"]
    assert "c.csv line 2" in camp.store.label_history(ids[0])[-1]["detail"]


def test_a_synchronous_oracle_without_a_value_fails_the_submission(tmp_path, toy_csv):
    """The dataset oracle cannot match a candidate: the submission is `failed`, not `done`."""
    from _toy import write_toy_config

    from matgen.campaign import DatasetOracle

    class Blind(DatasetOracle):
        def request(self, candidates, round_index):
            return {c["id"]: {p: math.nan for p in self.properties} for c in candidates}

    cfg = load_config(write_toy_config(tmp_path, toy_csv, name="blind", rounds=1))
    camp = Campaign(cfg, oracle=Blind(cfg.oracle.csv, cfg.property_names()))
    assert camp.run()[0]["status"] == "reported"  # the round does not wait forever
    subs = camp.store.submissions()
    assert {s["status"] for s in subs} == {"failed"}
    assert all("no finite value" in s["detail"] for s in subs)
    res = _imp(cfg_path := tmp_path / "blind.yaml", _write(
        tmp_path, f"candidate_id,band_gap\n{subs[0]['candidate_id']},1.2\n"))
    assert res.exit_code == 0 and "accepted 1 rows" in res.output, res.output
    assert Campaign(load_config(cfg_path)).store.labels()[subs[0]["candidate_id"]][
        "band_gap"] == 1.2
