"""benchmarks/csp_select.py: the reference-free selectors that pick one CSP answer of K."""

from __future__ import annotations

import math

from ase import Atoms

from tests.benchmarks._bench import load_benchmark


def test_energy_pick_takes_the_lowest_scored_energy_and_skips_missing_ones():
    sel = load_benchmark("csp_select")
    energies = {"a": -3.0, "b": -3.5, "c": math.nan}
    assert sel.energy_pick(["a", "b", "c", "d"], energies) == 1
    assert sel.energy_pick(["c", "d"], energies) is None


def test_groups_keep_file_order_per_reference():
    sel = load_benchmark("csp_select")
    frames = [Atoms("H", cell=[3, 3, 3], pbc=True, info={"material_id": m})
              for m in ["x", "y", "x", "y", "x"]]
    assert sel.groups(frames) == {"x": [0, 2, 4], "y": [1, 3]}
