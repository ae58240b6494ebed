"""Campaign selection fits its GPs around the scorer's predictions (PredictorPrior) when every
candidate carries a prediction and a _std of each objective property, else plain GPs."""

from __future__ import annotations

import math

import pytest
import torch

from matgen.campaign import Campaign, load_config
from matgen.campaign._selection import predictor_columns


def test_predictor_columns_need_finite_predictions_and_positive_stds():
    rows = [
        {"scores": {"a": 1.0, "a_std": 0.5, "b": -2.0, "b_std": 0.1}},
        {"scores": {"a": 3.0, "a_std": 0.2, "b": 0.0, "b_std": 0.3}},
    ]
    cols = predictor_columns(rows, ["a", "b"])
    assert torch.equal(
        cols, torch.tensor([[1.0, -2.0, 0.5, 0.1], [3.0, 0.0, 0.2, 0.3]], dtype=torch.float64)
    )
    for bad in ({"a_std": 0.0}, {"b": math.nan}, {"a_std": None}):
        broken = [rows[0], {"scores": {**rows[1]["scores"], **bad}}]
        assert predictor_columns(broken, ["a", "b"]) is None
    assert predictor_columns([{"scores": None}], ["a"]) is None


@pytest.mark.parametrize(("surrogate", "want_prior"), [("auto", True), ("gp", False)])
def test_selection_uses_the_predictor_prior_when_it_can(
    tmp_path, toy_csv, monkeypatch, surrogate, want_prior
):
    from _toy import write_toy_config

    import matgen.campaign._selection as selection

    seen = []
    real = selection.fit_gp_models

    def spy(x, y, seed=0, prior=None):
        seen.append((prior, x.shape[1]))
        return real(x, y, seed=seed, prior=prior)

    monkeypatch.setattr(selection, "fit_gp_models", spy)
    path = write_toy_config(tmp_path, toy_csv, rounds=3, pool=12, batch=3)
    path.write_text(
        path.read_text().replace(
            "min_labels_for_gp: 4", f"min_labels_for_gp: 3, surrogate: {surrogate}"
        )
    )
    Campaign(load_config(path)).run()
    assert seen, "no round fitted GPs"
    for prior, width in seen:
        # the toy scorer predicts band_gap and e_above_hull with a _std: 2 means + 2 stds
        assert (prior is not None) == want_prior
        assert (width == 4) == want_prior
