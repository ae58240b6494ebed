"""matgen.acquisition: Bayesian-optimisation selection of candidates from a discrete pool.

Composes BoTorch pieces: a model over candidate features (:func:`fit_gp_models`, or
:class:`PoolEnsembleModel` from predicted means and standard deviations) -> posterior ->
objective and window constraints (:class:`Target`) -> acquisition (qLogNEI for one goal,
qLogNEHVI for several, a margin objective or the probability of feasibility for window-only
targets) -> sequential greedy optimisation over the pool with tested items excluded and at most
one pick per group (e.g. reduced formula): :func:`select`.
"""

from __future__ import annotations

from matgen.acquisition._features import (
    ELEMENT_PROPERTIES,
    batch_compositions,
    cell_features,
    composition_features,
    crystal_features,
    structure_features,
)
from matgen.acquisition._models import (
    FeatureScaler,
    PoolEnsembleModel,
    PredictorPrior,
    fit_gp_models,
)
from matgen.acquisition._select import (
    Selection,
    Target,
    build_acquisition,
    build_constraints,
    is_hit,
    margin_objective,
    select,
    select_batch,
    select_feasible,
    select_random,
)

__all__ = [
    "ELEMENT_PROPERTIES",
    "FeatureScaler",
    "PoolEnsembleModel",
    "PredictorPrior",
    "Selection",
    "Target",
    "batch_compositions",
    "build_acquisition",
    "build_constraints",
    "cell_features",
    "composition_features",
    "crystal_features",
    "fit_gp_models",
    "is_hit",
    "margin_objective",
    "select",
    "select_batch",
    "select_feasible",
    "select_random",
    "structure_features",
]
