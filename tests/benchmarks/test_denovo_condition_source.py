"""benchmarks/denovo_condition_source.py: training rows' conditions drawn jointly, and de novo
sampling of the shipped default with per-request condition values."""

from __future__ import annotations

import math

import pandas as pd
import torch

from matgen.generate import SampleSpec
from tests.benchmarks._bench import load_benchmark


def test_rows_are_drawn_whole_seeded_and_without_missing_labels(tmp_path):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, float("nan")], "b": [10.0, 20.0, 30.0, 40.0],
                  "other": ["x", "y", "z", "w"]}).to_csv(csv, index=False)
    mod = load_benchmark("denovo_condition_source")
    vals = mod.draw_rows(csv, ["a", "b"], 50, seed=3)
    assert set(vals) == {"a", "b"} and all(v.shape == (50,) for v in vals.values())
    pairs = set(zip(vals["a"].tolist(), vals["b"].tolist()))
    assert pairs <= {(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)}  # whole rows, never the NaN one
    assert len(pairs) == 3
    again = mod.draw_rows(csv, ["a", "b"], 50, seed=3)
    assert all(torch.equal(vals[k], again[k]) for k in vals)


def test_sampling_with_per_request_conditions_gives_one_crystal_per_request():
    mod = load_benchmark("denovo_condition_source")
    names = ["band_gap", "e_above_hull", "formation_energy_per_atom"]
    spec = SampleSpec(num=3, seed=0, device="cpu", batch_size=3, steps=2,
                      conditions=[f"{n}=0" for n in names])
    values = {n: torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64) for n in names}
    frames = mod.sample(spec, values)
    assert len(frames) == 3
    for f in frames:
        assert len(f) >= 1 and all(math.isfinite(x) for x in f.cell.array.ravel())
    # the values reach the denoiser: other values, same seed, other crystals
    other = mod.sample(spec, {n: torch.full((3,), 8.0, dtype=torch.float64) for n in names})
    assert any(not (len(a) == len(b) and (a.cell.array == b.cell.array).all())
               for a, b in zip(frames, other))
