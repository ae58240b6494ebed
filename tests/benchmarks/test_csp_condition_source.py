"""benchmarks/csp_condition_source.py: each CSP request gets its own row's labels."""

from __future__ import annotations

import pandas as pd
import torch

from tests.benchmarks._bench import load_benchmark


def test_labels_follow_the_requests_ids_not_the_split_order():
    split = pd.DataFrame({"material_id": ["a", "b", "c"], "band_gap": [0.0, 1.5, 3.0],
                          "e_above_hull": [0.01, 0.02, 0.03]})
    vals = load_benchmark("csp_condition_source").row_values(
        split, ["c", "a", "c"], ["band_gap", "e_above_hull"])
    assert torch.equal(vals["band_gap"], torch.tensor([3.0, 0.0, 3.0], dtype=torch.float64))
    assert torch.allclose(vals["e_above_hull"],
                          torch.tensor([0.03, 0.01, 0.03], dtype=torch.float64))
