"""benchmarks/csp_relax.py: per-reference changes between two CSP per-structure tables."""

from __future__ import annotations

import pandas as pd

from tests.benchmarks._bench import load_benchmark


def _table(rows):
    return pd.DataFrame(rows, columns=["material_id", "matched", "rms_dist"]).set_index("material_id")


def test_compare_counts_gains_losses_and_loose_matches_that_tighten():
    before = _table([("a", True, 0.30), ("b", True, 0.01), ("c", False, None),
                     ("d", True, 0.05), ("e", True, 0.10)])
    after = _table([("a", True, 0.02), ("b", True, 0.25), ("c", True, 0.04), ("d", False, None)])
    # e has no relaxed frame (unreadable input): unmatched after
    got = load_benchmark("csp_relax").compare(before, after)
    assert got["matched_before"] == 4 and got["matched_after"] == 3
    assert got["gained"] == 1 and got["lost"] == 2 and got["matched_both"] == 2
    assert got["loose_before"] == 1 and got["loose_after"] == 1
    assert got["loose_to_tight"] == 1 and got["tight_to_loose"] == 1
    assert got["closer_after"] == 1 and got["farther_after"] == 1
    assert abs(got["rms_both_mean_before"] - 0.155) < 1e-9
    assert abs(got["rms_both_mean_after"] - 0.135) < 1e-9
