"""benchmarks/denovo_composition_stats.py: elements and singletons per cell-size bin, the share
of crystals per element count and holding each element."""

from __future__ import annotations

import pytest

from tests.benchmarks._bench import load_benchmark


def test_counts_elements_and_singletons_per_size_bin():
    stats = load_benchmark("denovo_composition_stats").composition_stats([
        ["Na", "Cl"],                                   # 1-4: 2 elements, 2 singletons
        ["O"] * 12 + ["Ti"] * 6 + ["Sr", "Ba"],         # 15-20: 4 elements, 2 singletons
        ["O"] * 10 + ["Ti"] * 5,                        # 15-20: 2 elements, none
    ])
    assert stats["by_cell_size"]["1-4"] == {"crystals": 1, "elements": 2.0, "singletons": 2.0}
    big = stats["by_cell_size"]["15-20"]
    assert big["crystals"] == 2 and big["elements"] == 3.0 and big["singletons"] == 1.0
    assert stats["num_elements_share"] == {"2": pytest.approx(2 / 3), "4": pytest.approx(1 / 3)}
    assert stats["element_share"]["O"] == pytest.approx(2 / 3)
    assert stats["element_share"]["Na"] == pytest.approx(1 / 3)
