"""Choosing a round's batch from its pool: the inputs and model handed to
:mod:`matgen.acquisition` (a GP on the labels when there are enough of them, else the scorer's
predictions as an ensemble posterior)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from matgen.acquisition import (
    FeatureScaler,
    PoolEnsembleModel,
    PredictorPrior,
    Selection,
    Target,
    crystal_features,
    fit_gp_models,
    select_feasible,
    select_random,
)
from matgen.campaign._config import CampaignConfig
from matgen.campaign._store import CandidateRow
from matgen.crystal import CrystalBatch

log = logging.getLogger("matgen.campaign")

Labels = Mapping[str, Mapping[str, float | None]]


def predictor_columns(rows: Sequence[Mapping], props: Sequence[str]) -> torch.Tensor | None:
    """``(n, 2m)``: the scorer's prediction of each property, then its ``_std``, for every row;
    None unless all are finite and every std positive (what :class:`PredictorPrior` needs)."""
    vals = []
    for r in rows:
        sc = r.get("scores") or {}
        row = [sc.get(p) for p in props] + [sc.get(f"{p}_std") for p in props]
        if any(v is None or not np.isfinite(v) for v in row) or any(
            v <= 0 for v in row[len(props) :]
        ):
            return None
        vals.append(row)
    return torch.tensor(vals, dtype=torch.float64).reshape(len(rows), 2 * len(props))


def _score_matrix(rows: Sequence[CandidateRow], props: Sequence[str]) -> torch.Tensor:
    """``(n, m)`` the scorer's prediction of each property (NaN where it gave none)."""
    return torch.tensor(
        [[_value(r.scores or {}, p) for p in props] for r in rows], dtype=torch.float64
    ).reshape(len(rows), len(props))


def _value(values: Mapping[str, float | None], key: str) -> float:
    v = values.get(key)
    return v if v is not None else float("nan")


def pool_features(rows: Sequence[CandidateRow], props: Sequence[str]) -> torch.Tensor:
    """Crystal features of the rows with the scorer's predictions appended (0 when missing)."""
    from pymatgen.core import Structure

    if not rows:
        return torch.zeros(0, 0, dtype=torch.float64)
    structs = [Structure.from_str(r.cif, fmt="cif") for r in rows]
    feats = crystal_features(CrystalBatch.from_structures(structs, dtype=torch.float64))
    pred = torch.nan_to_num(_score_matrix(rows, props), nan=0.0)
    return torch.cat([feats, pred], dim=-1)


def _inputs(
    cfg: CampaignConfig, rows: Sequence[CandidateRow]
) -> tuple[torch.Tensor, PredictorPrior | None]:
    """The model inputs of pool + labelled rows: the scorer's predictions (standardised, with
    their prior) where the surrogate may use them, else scaled crystal features."""
    props = cfg.property_names()
    pred = predictor_columns(rows, props)
    if cfg.acquisition.surrogate == "prior_gp" and pred is None:
        log.warning(
            "acquisition.surrogate prior_gp: the scorer gave no finite prediction and _std of "
            "%s for every candidate; plain GPs this round",
            ", ".join(props),
        )
    if pred is not None and cfg.acquisition.surrogate != "gp":
        return PredictorPrior.standardise(pred)
    x_all = pool_features(rows, props)
    return FeatureScaler.fit(x_all)(x_all), None


def _fit_gp(cfg, x_lab, y_lab, prior, seed):
    """GPs on the labels, or None with too few labels of some property (or a failed fit)."""
    enough = y_lab.shape[0] > 0 and all(
        int((~torch.isnan(y_lab[:, k])).sum()) >= cfg.acquisition.min_labels_for_gp
        for k in range(y_lab.shape[1])
    )
    if not enough:
        return None
    try:
        return fit_gp_models(x_lab, y_lab, seed=seed, prior=prior)
    except Exception as exc:  # noqa: BLE001 - fall back to the scorer's posterior
        log.warning("GP fit failed (%s); using the scorer's predictions", exc)
        return None


def choose_batch(
    cfg: CampaignConfig,
    targets: Sequence[Target],
    pool: Sequence[CandidateRow],
    labelled: Sequence[CandidateRow],
    labels: Labels,
    seed: int,
) -> Selection:
    """The batch of ``cfg.batch_size`` (at most the pool) picked from ``pool``.

    ``random``: :func:`matgen.acquisition.select_random`. Otherwise BoTorch
    (:func:`matgen.acquisition.select_feasible`) on GPs fitted to the ``labelled`` rows'
    labels, or, with fewer than ``min_labels_for_gp`` labels of a property, on the scorer's
    predictions (:meth:`PoolEnsembleModel.from_predictions`). Positions index ``pool``.
    """
    acq = cfg.acquisition
    q = min(cfg.batch_size, len(pool))
    groups = [c.reduced_formula for c in pool]
    if q <= 0:
        return Selection([], [], acq.kind)
    if acq.kind == "random":
        return select_random(groups, q, seed, diverse=acq.diversity == "formula")
    props = cfg.property_names()
    x_all, prior = _inputs(cfg, [*pool, *labelled])
    x_pool, x_lab = x_all[: len(pool)], x_all[len(pool) :]
    y_lab = torch.tensor(
        [[_value(labels[c.id], p) for p in props] for c in labelled], dtype=torch.float64
    ).reshape(len(labelled), len(props))
    model, baseline = _fit_gp(cfg, x_lab, y_lab, prior, seed), x_lab
    if model is None:
        scale = {o.property: o.scale for o in cfg.objectives}
        std = torch.tensor(
            [[(c.scores or {}).get(f"{p}_std") or scale[p] for p in props] for c in pool],
            dtype=torch.float64,
        )
        model = PoolEnsembleModel.from_predictions(x_pool, _score_matrix(pool, props), std, seed)
        baseline = x_pool
    return select_feasible(
        model,
        x_pool,
        q,
        targets,
        props,
        baseline,
        groups=groups if acq.diversity == "formula" else None,
        kind=acq.kind,
        seed=seed,
    )
