"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose weights track an exponential moving average.

    ``update(model, step)`` sets ``ema = d * ema + (1 - d) * weights`` with
    ``d = min(decay, (1 + step) / (10 + step))`` (a warm-up so early averages are not dominated
    by the random initialisation); buffers are copied.

    Args:
        model: the model being trained (its un-wrapped module, not DDP / compiled).
        decay: asymptotic decay in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, finite: torch.Tensor | None = None) -> None:
        """One EMA step. ``finite`` (a 0-dim device tensor, 1 or 0) scales the step's weight
        without a host sync: 0 (a skipped, non-finite training step) leaves the average and
        its floating buffers as they were."""
        d = self.current_decay(step)
        ema_p = [p for p in self.module.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        floats = [(e, s) for e, s in zip(ema_p, src_p, strict=True) if e.is_floating_point()]
        ema_f, src_f = [e for e, _ in floats], [s for _, s in floats]
        if floats and finite is None:
            torch._foreach_lerp_(ema_f, src_f, 1.0 - d)
        elif floats:  # ema += (1 - d) * finite * (src - ema): one weight tensor, no host read
            diff = torch._foreach_sub(src_f, ema_f)
            torch._foreach_mul_(diff, finite.to(ema_f[0].dtype) * (1.0 - d))
            torch._foreach_add_(ema_f, diff)
        for e, s in zip(self.module.buffers(), model.buffers(), strict=True):
            if finite is not None and e.is_floating_point():
                e.copy_(torch.where(finite.bool(), s, e))
            else:
                e.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True):
        return self.module.load_state_dict(state, strict=strict)
