"""benchmarks/denovo_reveal_trace.py: singleton shares per cell size and reveal-step window."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmarks._bench import load_benchmark


def test_singleton_shares_per_size_and_reveal_window():
    rows = np.array([  # (cell size, reveal step, singleton, elements)
        (2, 1, 1, 2), (2, 10, 1, 2),
        (16, 1, 1, 3), (16, 2, 0, 3), (16, 9, 0, 3), (16, 10, 0, 3),
    ])
    out = load_benchmark("denovo_reveal_trace").summarise(rows, steps=10)
    assert out["1-4 atoms"]["singleton_share"] == 1.0
    big = out["15-20 atoms"]
    assert big["atoms"] == 4 and big["singleton_share"] == pytest.approx(0.25)
    assert big["by_reveal_step"]["steps 1-2"] == {"atoms": 2, "singleton_share": 0.5}
    assert big["by_reveal_step"]["steps 9-10"] == {"atoms": 2, "singleton_share": 0.0}
    assert "5-8 atoms" not in out
