"""benchmarks/campaign_acceleration.py on the real pool (slow: one seed, a few minutes on 2 cores).

The recorded acceleration is a claim; this re-runs one development seed end to end and fails if
the predictor-prior campaign stops beating the predictors alone or random selection.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(datasets_dir):
    spec = importlib.util.spec_from_file_location(
        "campaign_acceleration_bench", REPO / "benchmarks" / "campaign_acceleration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pool = mod.load_pool()
    pool.update({k: v for k, v in mod.load_predictions(len(pool["y"])).items() if k != "seconds"})
    return mod, pool


@pytest.mark.slow
def test_prior_gp_campaign_beats_the_predictors_alone_and_random(bench):
    mod, pool = bench
    base = float(mod.hits_of(pool["y"]).mean())
    budget = mod.INIT + mod.BATCH * mod.ROUNDS
    learned = mod.run_bo(pool, 0, "pof", "prior_gp")
    alone = mod.run_bo(pool, 0, "pof", "prior_only")
    rnd = mod.run_random(pool, 0)
    assert len(learned) == mod.ROUNDS + 1 and learned == sorted(learned)
    assert learned[-1] / (base * budget) >= 10.0, learned
    assert learned[-1] > alone[-1] > rnd[-1], (learned, alone, rnd)


@pytest.mark.slow
def test_two_objective_campaign_beats_random_hypervolume(bench):
    mod, pool = bench
    r = mod.run_mo(pool, 0, "prior_gp")
    assert r["bo_hv"][-1] > r["random_hv"][-1]
    assert r["bo_hv"][-1] <= mod.hypervolume(pool["y"]) + 1e-9
