"""The run's ``metrics.csv`` and the per-interval averages a row is made of."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class MetricsCSV:
    """``metrics.csv`` in the run dir (rank 0); rows after a resumed step are dropped."""

    BASE: ClassVar[list[str]] = ["step", "epoch", "loss", "lr", "grad_norm", "steps_per_s",
                                 "elapsed_s", "nonfinite_total", "val_loss"]

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            fields = list(rows[0].keys()) if rows else None
            rows = [r for r in rows if r.get("step") and int(r["step"]) <= resume_step]
            if fields:
                with open(path, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=fields)
                    w.writeheader()
                    w.writerows(rows)
                self.fields = fields
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            extra = sorted(k for k in row if k not in self.BASE)
            self.fields = self.BASE + extra
            with open(self.path, "w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields).writeheader()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


@dataclass
class LogWindow:
    """The steps since the last metrics row: their losses, the objective's logs, the time.

    Attributes:
        t0: when the loop started (``elapsed_s``).
        t_log / steps_at_log: time and step of the last row (``steps_per_s``).
    """

    t0: float
    t_log: float
    steps_at_log: int
    losses: list[float] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def start(cls, step: int) -> LogWindow:
        now = time.perf_counter()
        return cls(now, now, step)

    def add(self, loss: float, logs: dict[str, float]) -> None:
        """A finite step's loss and logs."""
        self.losses.append(loss)
        for k, v in logs.items():
            self.logs.setdefault(k, []).append(float(v))

    def row(self, step: int, **values: Any) -> dict[str, Any]:
        """The metrics row at ``step`` (``values`` first: epoch, lr, grad_norm, ...) and a
        fresh window."""
        now = time.perf_counter()
        row = {
            "step": step,
            "loss": (sum(self.losses) / len(self.losses)) if self.losses else float("nan"),
            "steps_per_s": (step - self.steps_at_log) / max(1e-9, now - self.t_log),
            "elapsed_s": now - self.t0,
            **values,
        }
        row.update({k: sum(v) / len(v) for k, v in self.logs.items() if v})
        self.losses.clear()
        self.logs.clear()
        self.t_log, self.steps_at_log = now, step
        return row
