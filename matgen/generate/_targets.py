"""Property targets for conditional sampling: ``KEY=VALUE | LO:HI | :HI | LO:``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ConditionTarget:
    """A target for one property, parsed from ``KEY=VALUE``, ``KEY=LO:HI``, ``KEY=:HI``,
    ``KEY=LO:``.

    Attributes:
        name: the property (CSV column the model was trained on).
        low: lower bound (``-inf`` if open); equal to ``high`` for an exact value.
        high: upper bound (``+inf`` if open).
    """

    name: str
    low: float
    high: float

    @property
    def is_exact(self) -> bool:
        return self.low == self.high

    def describe(self) -> str:
        if self.is_exact:
            return f"{self.name}={self.low:g}"
        lo = "" if math.isinf(self.low) else f"{self.low:g}"
        hi = "" if math.isinf(self.high) else f"{self.high:g}"
        return f"{self.name}={lo}:{hi}"

    def draw(
        self, n: int, stats: Mapping[str, float], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` target values (raw units, ``(n,)`` float64).

        An exact value is repeated; a range ``[lo, hi]`` is sampled uniformly; an open side is
        closed at the training mean -/+ 2 standard deviations, but never beyond the training
        data's range (``min`` / ``max`` in ``stats``, when recorded) nor the other bound, so
        ``band_gap=2:`` draws from ``U(2, max(2, min(data max, mean + 2 std)))`` and
        ``band_gap=:0.5`` never asks for a negative gap.
        """
        if self.is_exact:
            return torch.full((n,), self.low, dtype=torch.float64)
        lo, hi = self.low, self.high
        m, s = float(stats["mean"]), float(stats["std"])
        dmin = float(stats.get("min", -math.inf))
        dmax = float(stats.get("max", math.inf))
        if math.isinf(lo):
            lo = min(hi, max(dmin, m - 2.0 * s))
        if math.isinf(hi):
            hi = max(lo, min(dmax, m + 2.0 * s))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return lo + (hi - lo) * u


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SPEC = re.compile(rf"^\s*([A-Za-z_][\w.\-]*)\s*=\s*({_NUM})?\s*(:)?\s*({_NUM})?\s*$")


def parse_condition(text: str) -> ConditionTarget:
    """Parse ``KEY=VALUE``, ``KEY=LO:HI``, ``KEY=:HI`` or ``KEY=LO:``.

    Raises:
        ValueError: with a one-line reason for anything else.
    """
    m = _SPEC.match(text)
    if not m:
        raise ValueError(
            f"bad condition {text!r}: expected KEY=VALUE, KEY=LO:HI, KEY=:HI or KEY=LO:"
        )
    name, lo, colon, hi = m.groups()
    if not all(math.isfinite(float(x)) for x in (lo, hi) if x is not None):
        raise ValueError(f"bad condition {text!r}: values must be finite numbers")
    if colon is None:
        if lo is None or hi is not None:
            raise ValueError(f"bad condition {text!r}: missing value")
        v = float(lo)
        return ConditionTarget(name, v, v)
    if lo is None and hi is None:
        raise ValueError(f"bad condition {text!r}: a range needs at least one bound")
    low = float(lo) if lo is not None else -math.inf
    high = float(hi) if hi is not None else math.inf
    if low > high:
        raise ValueError(f"bad condition {text!r}: low bound above high bound")
    return ConditionTarget(name, low, high)
