"""Conditional generation hit rate: how often samples land in a target property window.

The property of each generated sample must come from a predictor independent of the generator
(injected), and only valid samples are scored. Compare with the *base rate* (the same window on
unconditional samples, or on the training data) to show that conditioning moved the
distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class HitRate:
    """Hit rate of one sample set.

    Attributes:
        hits: valid samples with a finite property inside ``[low, high]``.
        num_valid: valid samples scored (the denominator).
        num_total: all samples, valid or not.
        rate: ``hits / num_valid`` (NaN when there is no valid sample).
        rate_of_all: ``hits / num_total``.
        low, high: the window (inclusive; ``None`` = unbounded).
    """

    hits: int
    num_valid: int
    num_total: int
    rate: float
    rate_of_all: float
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hit_rate(
    values: Sequence[float],
    window: tuple[float | None, float | None],
    valid: Sequence[bool] | None = None,
) -> HitRate:
    """Fraction of valid samples whose property lies in ``window = (low, high)``.

    Args:
        values: ``(n,)`` predicted property per sample (NaN = could not be predicted: a miss).
        window: inclusive bounds; ``None`` for an open side.
        valid: ``(n,)`` validity mask (default: all valid).
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    m = np.ones_like(v, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if m.shape != v.shape:
        raise ValueError("values and valid must have the same length")
    low, high = window
    if low is not None and high is not None and low > high:
        raise ValueError(f"empty window {window}")
    inside = np.isfinite(v)
    if low is not None:
        inside &= v >= low
    if high is not None:
        inside &= v <= high
    hits = int((inside & m).sum())
    nv = int(m.sum())
    return HitRate(
        hits=hits,
        num_valid=nv,
        num_total=int(v.size),
        rate=hits / nv if nv else math.nan,
        rate_of_all=hits / v.size if v.size else math.nan,
        low=low,
        high=high,
    )


def hit_rate_from_predictor(
    structures: Sequence,
    predictor: Callable[[list], Sequence[float]],
    window: tuple[float | None, float | None],
    valid: Sequence[bool] | None = None,
) -> HitRate:
    """:func:`hit_rate` with the property predicted by ``predictor`` on the valid structures.

    Args:
        structures: ``n`` pymatgen structures (``None`` for ones that could not be built).
        predictor: ``predictor(list_of_structures) -> values`` (an independent model).
        window: inclusive bounds.
        valid: validity mask; default: every non-``None`` structure.
    """
    mask = (
        [s is not None for s in structures]
        if valid is None
        else [bool(a) and s is not None for a, s in zip(valid, structures, strict=True)]
    )
    idx = [i for i, ok in enumerate(mask) if ok]
    vals = np.full(len(structures), np.nan)
    if idx:
        pred = np.asarray(predictor([structures[i] for i in idx]), dtype=float).reshape(-1)
        if pred.shape[0] != len(idx):
            raise ValueError(f"predictor returned {pred.shape[0]} values for {len(idx)} structures")
        vals[idx] = pred
    return hit_rate(vals, window, mask)


def compare_to_base_rate(conditional: HitRate, base: HitRate) -> dict[str, float]:
    """Enrichment of a conditional hit rate over a base rate, with a one-sided Fisher test.

    Returns:
        ``{"rate", "base_rate", "enrichment" (rate / base_rate), "difference",
        "p_value"}``; ``p_value`` tests rate > base_rate (``scipy.stats.fisher_exact``).
    """
    from scipy.stats import fisher_exact

    a, b = conditional.hits, conditional.num_valid - conditional.hits
    c, d = base.hits, base.num_valid - base.hits
    p = (
        float(fisher_exact([[a, b], [c, d]], alternative="greater").pvalue)
        if (conditional.num_valid and base.num_valid)
        else math.nan
    )
    enr = conditional.rate / base.rate if base.rate and base.rate > 0 else math.inf
    return {
        "rate": conditional.rate,
        "base_rate": base.rate,
        "enrichment": enr,
        "difference": conditional.rate - base.rate,
        "p_value": p,
    }
