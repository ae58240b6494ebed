"""Predictor-prior GPs: start from the predictor, follow the labels, keep its uncertainty shape."""

from __future__ import annotations

import pytest
import torch

from matgen.acquisition import (
    FeatureScaler,
    PredictorPrior,
    Target,
    fit_gp_models,
    is_hit,
    select,
)


@pytest.fixture(scope="module")
def pool():
    """A pool whose predictor is right up to a bias, with a per-candidate std that varies."""
    g = torch.Generator().manual_seed(1)
    n = 400
    truth = torch.rand(n, 1, generator=g, dtype=torch.float64) * 4.0
    std = 0.05 + 0.5 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    pred = truth + 0.3 + std * torch.randn(n, 1, generator=g, dtype=torch.float64)
    raw = torch.cat([pred, std], -1)
    scaler = FeatureScaler.fit(raw)
    prior = PredictorPrior(mean_columns=(0,), std_columns=(1,), scaler=scaler)
    return scaler(raw), truth, pred, std, prior


@pytest.fixture(scope="module")
def fitted(pool):
    x, truth, _pred, _std, prior = pool
    lab = torch.arange(0, 400, 40)
    return lab, fit_gp_models(x[lab], truth[lab], seed=0, prior=prior)


def test_far_from_labels_the_posterior_is_the_predictor(pool, fitted):
    x, truth, pred, std, _prior = pool
    lab, model = fitted
    with torch.no_grad():
        post = model.posterior(x.unsqueeze(-2))
        mu, sd = post.mean.reshape(-1), post.variance.reshape(-1).sqrt()
    # at the labels: the labels (nearly exact)
    assert torch.allclose(mu[lab], truth[lab, 0], atol=0.05)
    # the learned bias removes most of the predictor's +0.3 offset
    others = torch.ones(400, dtype=torch.bool)
    others[lab] = False
    err_gp = (mu[others] - truth[others, 0]).abs().mean()
    err_pred = (pred[others, 0] - truth[others, 0]).abs().mean()
    assert err_gp < err_pred
    # the posterior std keeps the predictor's per-candidate shape: it grows with the
    # predictor's std (rank correlation well above 0) among unlabelled candidates
    r_sd = sd[others].argsort().argsort().double()
    r_std = std[others, 0].argsort().argsort().double()
    assert torch.corrcoef(torch.stack([r_sd, r_std]))[0, 1] > 0.5


def test_prior_gp_finds_window_hits_from_few_labels(pool, fitted):
    x, truth, _pred, _std, _prior = pool
    lab, prior_model = fitted
    targets = [Target("y", minimum=1.0, maximum=1.5, scale=0.5)]
    assert 0.05 < is_hit(truth, targets, ["y"]).double().mean() < 0.25
    excl = torch.zeros(400, dtype=torch.bool)
    excl[lab] = True
    rates = {}
    # the same ten labels: a plain GP cannot yet tell where the window is, the prior GP can
    for name, model in (("prior", prior_model),
                        ("plain", fit_gp_models(x[lab], truth[lab], seed=0))):
        sel = select(model, x, 10, targets, ["y"], x[lab], exclude=excl, kind="pof")
        rates[name] = is_hit(truth[sel.indices], targets, ["y"]).double().mean().item()
    assert rates["prior"] >= 0.6 and rates["prior"] > rates["plain"], rates


def test_prior_columns_must_pair_up(pool):
    scaler = pool[4].scaler
    with pytest.raises(ValueError, match="one mean column and one std column"):
        PredictorPrior(mean_columns=(0, 1), std_columns=(2,), scaler=scaler)
