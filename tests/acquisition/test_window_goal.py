"""A window as an objective (two-objective campaigns): its value, its role, qLogNEHVI with it."""

from __future__ import annotations

import pytest
import torch

from matgen.acquisition import Target, build_constraints, fit_gp_models, select


def test_window_objective_is_minus_the_distance_to_the_window():
    t = Target("g", goal="window", minimum=1.0, maximum=2.0)
    y = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    assert torch.equal(t.objective(y), torch.tensor([-0.5, 0.0, 0.0, 0.0, -1.0],
                                                    dtype=torch.float64))
    assert torch.equal(Target("f", goal="minimize").objective(y), -y)
    with pytest.raises(ValueError, match="needs a minimum or a maximum"):
        Target("g", goal="window")


def test_a_window_goal_is_not_a_constraint():
    cons, _ = build_constraints([Target("g", goal="window", minimum=1.0, maximum=2.0),
                                 Target("f", maximum=0.0)], ["g", "f"])
    assert len(cons) == 1  # only f's window constrains


def test_nehvi_with_a_window_goal_picks_inside_the_window_and_low():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(120, 2, generator=g, dtype=torch.float64)
    y = torch.stack([3.0 * x[:, 0], x[:, 1]], -1)  # g in [0, 3]; f in [0, 1]
    lab = torch.arange(0, 120, 8)
    excl = torch.zeros(120, dtype=torch.bool)
    excl[lab] = True
    model = fit_gp_models(x[lab], y[lab], seed=0)
    targets = [Target("g", goal="window", minimum=1.0, maximum=2.0),
               Target("f", goal="minimize")]
    sel = select(model, x, 4, targets, ["g", "f"], x[lab], exclude=excl)
    assert sel.acquisition == "nehvi" and len(set(sel.indices)) == 4
    picked = y[sel.indices]
    # the best pick is inside the window with a low f (a random pick: 1/3 inside, 1/5 below
    # 0.2); the others trade the window for a lower f along the Pareto front, so all are low
    assert 0.9 < picked[0, 0] < 2.1 and picked[0, 1] < 0.1, picked
    assert (picked[:, 1] < 0.2).all(), picked
