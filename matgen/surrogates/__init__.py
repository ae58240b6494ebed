"""Surrogates: MLIP relaxation and energies, convex hull, property predictors, OOD score.

Public API:
    MLIP interface: :class:`MLIP`, :class:`SevenNetMLIP` (default), :class:`CHGNetMLIP`,
        :func:`load_mlip`, :class:`MLIPOutput`, :func:`energies_per_atom` (single points),
        :func:`energy_function` (the same, by MLIP name, loaded on first use).
    Relaxation: :func:`relax` (batched FIRE + Frechet cell filter; for SevenNet the whole
        state and the neighbour lists stay on the model's device, ``RelaxConfig.engine``),
        :func:`relax_ase` (ASE one-at-a-time reference), :class:`RelaxConfig`,
        :class:`RelaxResult`.
    Hull: :class:`ConvexHull` (``from_mp``, ``self_consistent``), :func:`build_hull_asset`.
    Predictors: :func:`fit_predictor`, :class:`PropertyPredictor`, :class:`PredictorConfig`,
        :class:`Prediction`, :func:`calibrate_std`, :func:`interval_metrics`,
        :func:`load_default_predictors`; descriptors :func:`featurize`,
        :class:`FeaturizerConfig`; OOD :func:`knn_distance`.
    Scoring: :func:`score_structures`, :class:`ScoreConfig`, :func:`write_score_csv`,
        :func:`write_relaxed_extxyz`, :func:`relaxed_structures`, :func:`default_hull`.
    Elemental references: :func:`load_elemental_energies` (``"chgnet"`` shipped, ``"mp"``),
        :func:`compute_elemental_references`.
"""

from __future__ import annotations

from matgen.surrogates._chgnet import CHGNetMLIP
from matgen.surrogates._elemental import compute_elemental_references, load_elemental_energies
from matgen.surrogates._features import FeaturizerConfig, feature_dim, featurize
from matgen.surrogates._hull import ConvexHull, build_hull_asset
from matgen.surrogates._mlip import (
    MLIP,
    MLIPOutput,
    energies_per_atom,
    energy_function,
    load_mlip,
    mlip_version,
    resolve_device,
)
from matgen.surrogates._predictor import (
    Prediction,
    PredictorConfig,
    PropertyPredictor,
    calibrate_std,
    fit_predictor,
    interval_metrics,
    knn_distance,
)
from matgen.surrogates._relax import RelaxConfig, RelaxResult, relax, relax_ase
from matgen.surrogates._score import (
    ScoreConfig,
    default_hull,
    load_default_predictors,
    relaxed_structures,
    score_structures,
    write_relaxed_extxyz,
    write_score_columns,
    write_score_csv,
)
from matgen.surrogates._sevennet import SevenNetMLIP

__all__ = [
    "MLIP",
    "CHGNetMLIP",
    "ConvexHull",
    "FeaturizerConfig",
    "MLIPOutput",
    "Prediction",
    "PredictorConfig",
    "PropertyPredictor",
    "RelaxConfig",
    "RelaxResult",
    "ScoreConfig",
    "SevenNetMLIP",
    "build_hull_asset",
    "calibrate_std",
    "compute_elemental_references",
    "default_hull",
    "energies_per_atom",
    "energy_function",
    "feature_dim",
    "featurize",
    "fit_predictor",
    "interval_metrics",
    "knn_distance",
    "load_default_predictors",
    "load_elemental_energies",
    "load_mlip",
    "mlip_version",
    "relax",
    "relax_ase",
    "relaxed_structures",
    "resolve_device",
    "score_structures",
    "write_relaxed_extxyz",
    "write_score_columns",
    "write_score_csv",
]
