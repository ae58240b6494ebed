"""Condition parsing for `matgen sample --condition` and the training-side condition dict."""

from __future__ import annotations

import math

import pytest
import torch
from _standin import tiny_crystals

from matgen.generate import parse_condition
from matgen.training import training_conditions


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("band_gap=1.5", 1.5, 1.5),
        ("band_gap=1:2", 1.0, 2.0),
        ("e_above_hull=:0.05", -math.inf, 0.05),
        ("formation_energy_per_atom=-1e-1:", -0.1, math.inf),
        (" bulk_modulus = 100 : 200 ", 100.0, 200.0),
    ],
)
def test_parse_condition_forms(text, low, high):
    spec = parse_condition(text)
    assert (spec.low, spec.high) == (low, high)


@pytest.mark.parametrize("text", ["band_gap", "band_gap=", "band_gap=:", "=1", "band_gap=2:1",
                                  "band_gap=a:b", "band_gap=1:2:3"])
def test_parse_condition_rejects(text):
    with pytest.raises(ValueError, match="condition"):
        parse_condition(text)


def test_draw_exact_range_and_open_bounds():
    g = torch.Generator().manual_seed(0)
    stats = {"mean": 1.0, "std": 0.5}
    assert torch.all(parse_condition("x=3").draw(5, stats, g) == 3.0)
    v = parse_condition("x=1:2").draw(1000, stats, g)
    assert v.min() >= 1.0 and v.max() <= 2.0 and abs(float(v.mean()) - 1.5) < 0.05
    hi = parse_condition("x=:0.5").draw(1000, stats, g)  # closed at mean - 2 std = 0
    assert hi.min() >= 0.0 and hi.max() <= 0.5
    lo = parse_condition("x=1.5:").draw(1000, stats, g)  # closed at mean + 2 std = 2
    assert lo.min() >= 1.5 and lo.max() <= 2.0
    assert parse_condition("x=:0.5").describe() == "x=:0.5"


def test_open_bounds_stay_inside_the_training_range():
    # band gaps: mean 0.79, std 1.42 (mp20_reduced); mean - 2 std is negative, the data's min is 0
    g = torch.Generator().manual_seed(0)
    stats = {"mean": 0.79, "std": 1.42, "min": 0.0, "max": 3.5}
    below = parse_condition("band_gap=:0.5").draw(2000, stats, g)
    assert below.min() >= 0.0 and below.max() <= 0.5 and float(below.mean()) > 0.2
    above = parse_condition("band_gap=3:").draw(2000, stats, g)  # mean + 2 std = 3.63 > max
    assert above.min() >= 3.0 and above.max() <= 3.5
    old = parse_condition("band_gap=:0.5").draw(2000, {"mean": 0.79, "std": 1.42}, g)
    assert old.min() < 0  # without a recorded range the old closure applies


def test_dataset_stats_records_label_range():
    from matgen.training import InMemorySource, dataset_stats

    b = tiny_crystals(16)
    st = dataset_stats(InMemorySource(b), ["band_gap"])["conditions"]["band_gap"]
    v = b.properties["band_gap"]
    assert st["min"] == pytest.approx(float(v.min())) and st["max"] == pytest.approx(float(v.max()))


def test_training_conditions_raw_labels_and_joint_drop():
    b = tiny_crystals(64)
    b.properties["other"] = torch.arange(64, dtype=torch.float32)
    cond = training_conditions(b, ["band_gap", "other"])
    assert torch.equal(cond["band_gap"], b.properties["band_gap"])
    g = torch.Generator().manual_seed(1)
    dropped = training_conditions(b, ["band_gap", "other"], drop_prob=0.5, generator=g)
    mask = torch.isnan(dropped["band_gap"])
    assert torch.equal(mask, torch.isnan(dropped["other"]))  # all conditions drop together
    assert 10 < int(mask.sum()) < 54
    assert training_conditions(b, []) is None
