"""A small stand-in denoiser + diffusion for testing the training loop in isolation.

The real denoiser and diffusion are tested by their own suites; here the loop (schedule, EMA,
checkpoints, resume, DDP) is tested against something tiny and fast with the same call shapes:
``denoiser(batch, t, cond) -> (N, 3)`` and the loop's loss protocol
(``matgen.training.TrainingObjective``): ``loss(denoiser, batch, cond=..., task=...)`` and
``stats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from matgen.crystal import CrystalBatch


@dataclass
class TinyOutput:
    coord: torch.Tensor  # (N, 3)
    type_logits: torch.Tensor  # (N, 4); only the de novo ("gen") loss uses it


class TinyDenoiser(nn.Module):
    def __init__(self, hidden: int = 16, conditions: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.conditions = conditions
        self.embed = nn.Embedding(100, hidden)
        self.inp = nn.Linear(hidden + 6 + 1 + len(conditions), hidden)
        self.out = nn.Linear(hidden, 3)
        self.types = nn.Linear(hidden, 4)

    def forward(self, batch: CrystalBatch, t: torch.Tensor, cond=None) -> TinyOutput:
        per = batch.batch
        feats = [self.embed(batch.atomic_numbers), torch.sin(6.2832 * batch.frac_coords),
                 torch.cos(6.2832 * batch.frac_coords), t[per, None]]
        for name in self.conditions:
            c = cond[name] if cond is not None else torch.full_like(t, float("nan"))
            feats.append(torch.nan_to_num(c, nan=0.0)[per, None])
        h = torch.tanh(self.inp(torch.cat(feats, -1)))
        return TinyOutput(self.out(h), self.types(h))


class TinyDiffusion:
    """Denoising loss on fractional coordinates; per-crystal mean, then mean over crystals
    (so a DDP average over equal per-rank batches equals the single-process loss).

    ``noisy=False`` makes the loss deterministic (used to compare DDP with one process).
    ``poison_steps`` makes the loss NaN on those calls (for the skip / abort tests).
    """

    stats = None  # no data statistics for a sampler to rebuild a diffusion from

    def __init__(self, noisy: bool = True, poison_calls: set[int] | None = None) -> None:
        self.noisy = noisy
        self.poison_calls = poison_calls or set()
        self.calls = 0
        self.tasks: list[str] = []

    def loss(self, model, batch: CrystalBatch, cond=None, task: str = "csp"):
        self.calls += 1
        self.tasks.append(task)
        b = batch.num_crystals
        if self.noisy:
            t = torch.rand(b)
            eps = torch.randn_like(batch.frac_coords)
        else:
            t = torch.full((b,), 0.5)
            eps = torch.cos(3.0 * batch.frac_coords + batch.atomic_numbers[:, None] * 0.1)
        x = batch.frac_coords + t[batch.batch, None] * eps
        noisy = CrystalBatch(batch.atomic_numbers, torch.remainder(x, 1.0), batch.lattice,
                             batch.num_atoms, batch.properties, batch.ids)
        out = model(noisy, t, cond)
        err = ((out.coord - eps) ** 2).sum(-1)
        if task == "gen":  # the type head gets gradients on de novo steps only (as in CSP)
            err = err + torch.nn.functional.cross_entropy(
                out.type_logits, batch.atomic_numbers % 4, reduction="none")
        per_crystal = torch.zeros(b).index_add_(0, batch.batch, err) / batch.num_atoms
        loss = per_crystal.mean()
        if self.calls in self.poison_calls:
            loss = loss * float("nan")
        return loss, {"coord_loss": float(loss.detach())}


def tiny_crystals(n: int = 16, seed: int = 0) -> CrystalBatch:
    """``n`` random small crystals (1-4 atoms) with a ``band_gap`` property."""
    g = torch.Generator().manual_seed(seed)
    na = torch.randint(1, 5, (n,), generator=g)
    total = int(na.sum())
    lat = torch.diag_embed(3.0 + 2.0 * torch.rand(n, 3, generator=g))
    return CrystalBatch(
        atomic_numbers=torch.randint(1, 30, (total,), generator=g),
        frac_coords=torch.rand(total, 3, generator=g),
        lattice=lat,
        num_atoms=na,
        properties={"band_gap": 3.0 * torch.rand(n, generator=g)},
        ids=[f"c{i}" for i in range(n)],
    )
