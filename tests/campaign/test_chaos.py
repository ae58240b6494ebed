"""Chaos test (issue 20): a 3-round campaign with the dataset oracle SIGKILLed at 30+ seeded
random moments (store transactions, between the oracle's answer and the label write, random
delays) and resumed each time, then three runs at once with one killed. Invariants are checked
after every run; the recorded run is benchmarks/results/chaos_campaign.json."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigkill_chaos_keeps_every_invariant(tmp_path):
    spec = importlib.util.spec_from_file_location("chaos_campaign",
                                                  REPO / "benchmarks" / "chaos_campaign.py")
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    res = chaos.chaos(kills=30, concurrent=3, seed=0, work=tmp_path)
    assert res["kills"] >= 30 and res["resumes"] == res["kills"]
    assert res["after_answer_kills"] > 0 and res["replayed_requests"] > 0
    assert res["double_submissions"] == 0 and res["double_answers"] == 0
    assert res["lost_or_changed_labels"] == 0 and res["status_regressions"] == 0
    # the scorer's learning state (the dataset scorer's update count) is saved after each
    # round's update and loaded on resume: the final state matches, model_version included
    assert res["final_state_mismatches"] == 0
    conc = res["concurrent"]
    assert not conc["double_submissions"] and not conc["double_answers"]
    assert conc["lost_or_changed_labels"] == 0 and conc["status_regressions"] == 0
    assert not conc["differences"]
    assert all(c in (0, -9) for c in conc["exit_codes"])
