"""benchmarks/train_rows.py: the rows of the ``data.train_limit`` subset a run trained on."""

from __future__ import annotations

from matgen.training import train_subset_indices
from tests.benchmarks._bench import load_benchmark


def test_subset_rows_are_the_runs_subset_and_a_sample_of_it():
    ids = [f"mp-{i}" for i in range(40)]
    mod = load_benchmark("train_rows")
    keep = mod.subset_rows(ids, 12, 0, 100, 7)
    assert keep == [ids[i] for i in train_subset_indices(40, 12, 0)]
    few = mod.subset_rows(ids, 12, 0, 5, 7)
    assert len(few) == 5 and set(few) <= set(keep)
    assert mod.subset_rows(ids, None, 0, 100, 7) == ids  # no limit: the whole split
