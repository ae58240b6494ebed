"""Objectives, constraints, acquisition functions and diverse batch selection over a pool.

The pipeline composes BoTorch pieces: model -> posterior -> objective (+ constraints) ->
acquisition -> :func:`botorch.optim.optimize_acqf_discrete` over the pool.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from botorch.acquisition import (
    GenericMCObjective,
    qLogNoisyExpectedImprovement,
)
from botorch.acquisition.analytic import (
    AnalyticAcquisitionFunction,
    LogProbabilityOfFeasibility,
)
from botorch.acquisition.logei import qLogProbabilityOfFeasibility
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.models.model import Model
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler
from botorch.sampling.index_sampler import IndexSampler

from matgen.acquisition._models import PoolEnsembleModel

log = logging.getLogger("matgen.acquisition")

AcquisitionKind = Literal["auto", "nei", "nehvi", "pof", "qpof", "margin_nei"]


@dataclass(frozen=True)
class Target:
    """One campaign target on a model output.

    ``goal`` makes it an objective (maximised or minimised); ``minimum`` / ``maximum`` make it a
    window constraint (``minimum <= y <= maximum``); a target may have both. ``goal="window"``
    makes the window itself an objective instead of a constraint: maximise minus the distance
    outside the window (0 anywhere inside), e.g. one axis of a two-objective campaign. Examples:
    ``Target("band_gap", minimum=1.0, maximum=2.0)`` (band gap in a window),
    ``Target("e_above_hull", maximum=0.05)`` (at most 50 meV/atom above the hull),
    ``Target("bulk_modulus", goal="maximize")``,
    ``Target("band_gap", goal="window", minimum=1.5, maximum=3.0)``.

    Attributes:
        name: output name (a property column).
        goal: ``"maximize"``, ``"minimize"``, ``"window"`` or None.
        minimum: lower bound of the window, in the property's unit, or None.
        maximum: upper bound of the window, or None.
        scale: typical size of a change of this property (sets the constraint smoothing and
            normalises margins); 1.0 if unknown.
    """

    name: str
    goal: Literal["maximize", "minimize", "window"] | None = None
    minimum: float | None = None
    maximum: float | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.goal is None and self.minimum is None and self.maximum is None:
            raise ValueError(f"target {self.name!r} needs a goal, a minimum or a maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"target {self.name!r}: minimum > maximum")
        if self.goal == "window" and self.minimum is None and self.maximum is None:
            raise ValueError(f"target {self.name!r}: goal 'window' needs a minimum or a maximum")

    def objective(self, y: torch.Tensor) -> torch.Tensor:
        """The value to maximise for a goal target, same shape as ``y`` (property units).

        ``maximize``: ``y``; ``minimize``: ``-y``; ``window``: minus the distance from ``y`` to
        the window (0 inside).
        """
        if self.goal == "maximize":
            return y
        if self.goal == "minimize":
            return -y
        if self.goal == "window":
            out = torch.zeros_like(y)
            if self.minimum is not None:
                out = out - (self.minimum - y).clamp_min(0)
            if self.maximum is not None:
                out = out - (y - self.maximum).clamp_min(0)
            return out
        raise ValueError(f"target {self.name!r} has no goal")

    def satisfied(self, y: torch.Tensor) -> torch.Tensor:
        """Boolean ``(...)`` tensor: ``y`` inside the window (NaN is never inside)."""
        ok = ~torch.isnan(y)
        if self.minimum is not None:
            ok &= y >= self.minimum
        if self.maximum is not None:
            ok &= y <= self.maximum
        return ok


def is_hit(y: torch.Tensor, targets: Sequence[Target], output_names: Sequence[str]) -> torch.Tensor:
    """``(n,)`` bool: every window target satisfied for each row of ``y``: ``(n, m)``."""
    ok = torch.ones(y.shape[0], dtype=torch.bool)
    for t in targets:
        if t.minimum is not None or t.maximum is not None:
            ok &= t.satisfied(y[:, list(output_names).index(t.name)])
    return ok


def build_constraints(
    targets: Sequence[Target], output_names: Sequence[str]
) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]:
    """Window targets as BoTorch outcome constraints (feasible where ``c(samples) <= 0``).

    Targets with ``goal="window"`` are objectives, not constraints, and are left out.

    Returns:
        The constraint callables (each maps ``... x q x m`` samples to ``... x q``) and the
        per-constraint sigmoid temperatures ``eta`` (5 % of each target's scale).
    """
    cons: list[Callable[[torch.Tensor], torch.Tensor]] = []
    etas: list[float] = []
    for t in targets:
        if t.goal == "window":
            continue
        k = list(output_names).index(t.name)
        if t.minimum is not None:
            cons.append(lambda s, k=k, a=t.minimum: a - s[..., k])
            etas.append(0.05 * t.scale)
        if t.maximum is not None:
            cons.append(lambda s, k=k, b=t.maximum: s[..., k] - b)
            etas.append(0.05 * t.scale)
    return cons, torch.tensor(etas, dtype=torch.float64)


def margin_objective(targets: Sequence[Target], output_names: Sequence[str]) -> GenericMCObjective:
    """The smallest scaled margin over all window bounds (positive inside every window).

    A BoTorch objective for campaigns whose targets are all windows: maximising it drives
    candidates deep into the feasible region.
    """
    bounds = []
    for t in targets:
        k = list(output_names).index(t.name)
        if t.minimum is not None:
            bounds.append((k, t.minimum, 1.0, t.scale))
        if t.maximum is not None:
            bounds.append((k, t.maximum, -1.0, t.scale))

    def obj(samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        m = [sign * (samples[..., k] - b) / sc for k, b, sign, sc in bounds]
        return torch.stack(m, -1).min(-1).values

    return GenericMCObjective(obj)


@dataclass(frozen=True)
class Selection:
    """A selected batch.

    Attributes:
        indices: positions of the selected candidates in the pool, in selection order.
        values: acquisition value of each pick given the earlier picks (sequential greedy).
        acquisition: name of the acquisition function used.
    """

    indices: list[int]
    values: list[float]
    acquisition: str


def build_acquisition(
    model: Model,
    targets: Sequence[Target],
    output_names: Sequence[str],
    x_baseline: torch.Tensor,
    kind: AcquisitionKind = "auto",
    num_samples: int = 128,
    seed: int = 0,
):
    """Compose objective, constraints and acquisition function for the campaign targets.

    ``auto`` picks qLogNEI for one goal, qLogNEHVI for two or more goals, and for targets that
    are only windows qLogNEI on the :func:`margin_objective` with the windows as constraints.
    ``pof`` is the analytic log-probability that a candidate satisfies every window (a batch
    then maximises the expected number of hits); ``qpof`` its MC batch version (probability
    that at least one pick is a hit).

    Args:
        model: a fitted BoTorch model whose outputs follow ``output_names``.
        targets: the campaign targets.
        output_names: names of the model outputs.
        x_baseline: ``(n, d)`` features of the already labelled candidates.
        kind: acquisition function, see above.
        num_samples: MC samples of the posterior.
        seed: sampler seed (fixed seed: reproducible selection).
    """
    goals = [t for t in targets if t.goal is not None]
    if kind == "auto":
        kind = "nehvi" if len(goals) >= 2 else ("nei" if goals else "margin_nei")
    if kind == "pof":
        return _log_pof(model, targets, output_names), kind
    cons, eta = build_constraints(targets, output_names)
    mc = {"sampler": _sampler(model, num_samples, seed), "eta": eta if len(cons) else 1e-3}
    if kind == "qpof":
        if not cons:
            raise ValueError("'qpof' needs at least one window target")
        return qLogProbabilityOfFeasibility(model, cons, **mc), kind
    if kind == "nehvi":
        return _nehvi(model, goals, output_names, x_baseline, cons, mc), kind
    if kind == "margin_nei" or (kind == "nei" and not goals):
        if not cons:
            raise ValueError("no goal and no window: nothing to optimise")
        objective, kind = margin_objective(targets, output_names), "margin_nei"
    elif kind == "nei":
        g = goals[0]
        k = list(output_names).index(g.name)
        objective = GenericMCObjective(lambda s, X=None: g.objective(s[..., k]))
    else:
        raise ValueError(f"unknown acquisition {kind!r}")
    acqf = qLogNoisyExpectedImprovement(
        model,
        x_baseline,
        objective=objective,
        constraints=cons or None,
        prune_baseline=True,
        cache_root=_cache_root(model),
        **mc,
    )
    return acqf, kind


def _sampler(model: Model, num_samples: int, seed: int):
    """The ensemble's members for :class:`PoolEnsembleModel`, else Sobol QMC normal draws."""
    if isinstance(model, PoolEnsembleModel):
        return IndexSampler(sample_shape=torch.Size([model.members.shape[0]]), seed=seed)
    return SobolQMCNormalSampler(sample_shape=torch.Size([num_samples]), seed=seed)


def _cache_root(model: Model) -> bool | None:
    """No Cholesky root caching for the ensemble (its posterior is not Gaussian)."""
    return False if isinstance(model, PoolEnsembleModel) else None


def _log_pof(model: Model, targets: Sequence[Target], output_names: Sequence[str]):
    """Analytic log-probability that every window holds."""
    bounds = {
        list(output_names).index(t.name): (t.minimum, t.maximum)
        for t in targets
        if t.minimum is not None or t.maximum is not None
    }
    if not bounds:
        raise ValueError("'pof' needs at least one window target")
    return LogProbabilityOfFeasibility(model, bounds)


def _nehvi(model, goals, output_names, x_baseline, cons, mc):
    """qLogNEHVI over the goals, its reference point just below the baseline's worst means."""
    if len(goals) < 2:
        raise ValueError("'nehvi' needs at least two goals")
    idx = [list(output_names).index(g.name) for g in goals]

    def goal_values(s: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([g.objective(s[..., k]) for g, k in zip(goals, idx, strict=True)], -1)

    with torch.no_grad():
        mean = goal_values(model.posterior(x_baseline.to(torch.float64)).mean)
    span = (mean.max(0).values - mean.min(0).values).clamp_min(1e-6)
    ref_point = mean.min(0).values - 0.1 * span
    return qLogNoisyExpectedHypervolumeImprovement(
        model,
        ref_point=ref_point.tolist(),
        X_baseline=x_baseline,
        objective=GenericMCMultiOutputObjective(goal_values),
        constraints=cons or None,
        prune_baseline=True,
        cache_root=_cache_root(model),
        **mc,
    )


def _values(acqf, x: torch.Tensor, max_batch_size: int) -> torch.Tensor:
    """Acquisition value of each row of ``x`` alone (``q = 1``): ``(n,)``."""
    with torch.no_grad():
        return torch.cat(
            [
                acqf(x[i : i + max_batch_size].unsqueeze(-2))
                for i in range(0, x.shape[0], max_batch_size)
            ]
        )


def select_batch(
    acqf,
    choices: torch.Tensor,
    q: int,
    exclude: torch.Tensor | None = None,
    groups: Sequence[str] | None = None,
    max_batch_size: int = 1024,
    prefilter: int | None = 512,
) -> tuple[list[int], list[float]]:
    """Sequential greedy batch selection over a discrete pool, with exclusions and diversity.

    Each pick maximises the acquisition given the earlier picks (which become ``X_pending``,
    through :func:`botorch.optim.optimize_acqf_discrete`); excluded rows (already tested) are
    never picked, and with ``groups`` (e.g. reduced formulas) no two picks share a group.
    Analytic acquisitions (``q = 1`` only) are evaluated once and the batch is their best
    values under the same constraints. For large pools the joint (MC) greedy runs on the
    ``prefilter`` rows with the best single-point values.

    Args:
        acqf: a BoTorch acquisition function.
        choices: ``(P, d)`` pool features.
        q: batch size (fewer are returned when the pool runs out).
        exclude: ``(P,)`` bool, rows that may not be picked.
        groups: ``P`` group labels; at most one pick per label.
        max_batch_size: rows evaluated per forward pass.
        prefilter: rows kept for the joint greedy (None: all).

    Returns:
        Pool positions of the picks and their acquisition values.
    """
    choices = choices.to(torch.float64)
    group_arr = np.asarray(groups, dtype=object) if groups is not None else None
    allowed = torch.ones(choices.shape[0], dtype=torch.bool)
    if exclude is not None:
        allowed &= ~exclude.to(torch.bool)
    picked: list[int] = []
    values: list[float] = []
    analytic = isinstance(acqf, AnalyticAcquisitionFunction)
    if analytic or (prefilter is not None and int(allowed.sum()) > prefilter):
        pos = torch.nonzero(allowed).flatten()
        vals = _values(acqf, choices[pos], max_batch_size)
        order = pos[torch.argsort(vals, descending=True, stable=True)]
        if analytic:
            best = dict(zip(pos.tolist(), vals.tolist(), strict=True))
            for i in order.tolist():
                if len(picked) == q:
                    break
                if not allowed[i]:
                    continue
                picked.append(i)
                values.append(float(best[i]))
                allowed[i] = False
                if group_arr is not None:
                    allowed &= torch.as_tensor(group_arr != group_arr[i])
            return picked, values
        keep = torch.zeros_like(allowed)
        keep[order[:prefilter]] = True
        allowed &= keep
    base_pending = acqf.X_pending
    for _ in range(q):
        pos = torch.nonzero(allowed).flatten()
        if pos.numel() == 0:
            break
        x, v = optimize_acqf_discrete(
            acqf, q=1, choices=choices[pos], max_batch_size=max_batch_size, unique=True
        )
        # map the chosen row back to its pool position (first allowed row with those features)
        hit = torch.nonzero((choices[pos] == x[0]).all(-1)).flatten()
        i = int(pos[hit[0]])
        picked.append(i)
        values.append(float(v.reshape(-1)[0]))
        allowed[i] = False
        if group_arr is not None:
            allowed &= torch.as_tensor(group_arr != group_arr[i])
        pending = choices[picked]
        if base_pending is not None:
            pending = torch.cat([base_pending, pending], dim=-2)
        acqf.set_X_pending(pending)
    acqf.set_X_pending(base_pending)
    return picked, values


def select(
    model: Model,
    choices: torch.Tensor,
    q: int,
    targets: Sequence[Target],
    output_names: Sequence[str],
    x_baseline: torch.Tensor,
    exclude: torch.Tensor | None = None,
    groups: Sequence[str] | None = None,
    kind: AcquisitionKind = "auto",
    seed: int = 0,
) -> Selection:
    """Build the acquisition for ``targets`` and pick a diverse batch of ``q`` from the pool.

    See :func:`build_acquisition` and :func:`select_batch`.
    """
    acqf, name = build_acquisition(model, targets, output_names, x_baseline, kind, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        idx, vals = select_batch(acqf, choices, q, exclude=exclude, groups=groups)
    return Selection(idx, vals, name)


def select_feasible(
    model: Model,
    choices: torch.Tensor,
    q: int,
    targets: Sequence[Target],
    output_names: Sequence[str],
    x_baseline: torch.Tensor,
    groups: Sequence[str] | None = None,
    kind: AcquisitionKind = "auto",
    seed: int = 0,
) -> Selection:
    """:func:`select`, falling back to the probability of a hit (``pof``) when BoTorch finds no
    baseline point inside the hit windows ("all training points are infeasible": early rounds
    with no hit yet). The improvement over the best feasible point is then undefined and
    BoTorch itself advises probability of feasibility; the selection names ``pof`` as its
    acquisition."""
    from botorch.exceptions.warnings import BotorchWarning

    def pick(how: AcquisitionKind) -> Selection:
        return select(
            model, choices, q, targets, output_names, x_baseline, groups=groups, kind=how, seed=seed
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BotorchWarning)
        sel = pick(kind)
    infeasible = any("training points are infeasible" in str(w.message) for w in caught)
    for w in caught:
        if "training points are infeasible" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    windows = any(t.minimum is not None or t.maximum is not None for t in targets)
    if infeasible and windows and kind in ("auto", "nei", "margin_nei"):
        log.info(
            "no labelled candidate is inside the hit windows yet: selecting by the "
            "probability of a hit (pof)"
        )
        sel = pick("pof")
    return sel


def select_random(groups: Sequence[str], q: int, seed: int, diverse: bool = False) -> Selection:
    """``q`` pool positions in a random order (``numpy.random.default_rng(seed)``), at most one
    per group when ``diverse``: the baseline BO is measured against. Values are NaN."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    picks: list[int] = []
    for i in rng.permutation(len(groups)):
        if len(picks) >= q:
            break
        if diverse and groups[i] in seen:
            continue
        seen.add(groups[i])
        picks.append(int(i))
    return Selection(picks, [float("nan")] * len(picks), "random")
