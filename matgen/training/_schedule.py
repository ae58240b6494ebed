"""Learning-rate schedule: linear warm-up then cosine decay, over steps or over wall time."""

from __future__ import annotations

import math

import torch


class CosineFactor:
    """The ``LambdaLR`` factor: ``(s+1)/warmup`` during warm-up, then a cosine from 1 to
    ``min_lr_ratio``, constant after its end.

    The cosine's progress is the step's share of ``total_steps``; a wall-time budget can
    drive it as well (``optim.schedule: time``, a run of ``--max-time`` minutes): the loop
    sets :attr:`time_share`, the part of the call's budget spent (the same on every rank), and
    the progress is the larger of the two. :attr:`floor` is the progress a resumed run had
    reached, so the rest of the cosine is spread over the new call's time. Being an object
    (not a function), its attributes are saved and restored with the scheduler's state.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        self.time_share = 0.0
        self.floor = 0.0
        self.progress = 0.0

    def start_call(self) -> None:
        """A new call (a resume) spreads what is left of the cosine over its own budget."""
        self.floor, self.time_share = self.progress, 0.0

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        by_steps = (step - self.warmup_steps) / span
        by_time = self.floor + (1.0 - self.floor) * self.time_share
        self.progress = min(1.0, max(by_steps, by_time, self.progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (
            1.0 + math.cos(math.pi * self.progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with factor ``(s+1)/warmup`` during warm-up, then a cosine from 1 to
    ``min_lr_ratio`` at ``total_steps`` (constant after); see :class:`CosineFactor` for the
    wall-time variant."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, CosineFactor(warmup_steps, total_steps, min_lr_ratio))
