"""Closed-form 3x3 linear algebra (no solver calls, no host synchronisation on GPUs)."""

from __future__ import annotations

import torch


def cofactor_rows(lattice: torch.Tensor) -> torch.Tensor:
    """Rows ``(b x c, c x a, a x b)`` of a batch of 3x3 matrices ``(B, 3, 3)`` with rows a, b, c.

    ``lattice @ cofactor_rows(lattice).T == det * I``, so ``inv = cofactor_rows.T / det``.
    """
    a, b, c = lattice.unbind(-2)
    return torch.stack(
        [torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], -2
    )


def det3(lattice: torch.Tensor) -> torch.Tensor:
    """Signed determinant ``(B,)`` of ``(B, 3, 3)`` matrices (triple product of the rows)."""
    a, b, c = lattice.unbind(-2)
    return (a * torch.linalg.cross(b, c)).sum(-1)


def inv3(lattice: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Inverse ``(B, 3, 3)``; determinants are kept at least ``eps`` away from 0."""
    d = det3(lattice)
    d = torch.where(d >= 0, d.clamp(min=eps), d.clamp(max=-eps))
    return cofactor_rows(lattice).transpose(-1, -2) / d.view(-1, 1, 1)


def polar_rotation(lattice: torch.Tensor, iterations: int = 12) -> torch.Tensor:
    """Orthogonal factor Q of the polar decomposition ``L = S Q`` (S symmetric positive).

    Scaled Newton iteration ``X <- (g X + X^-T / g) / 2`` (Higham), which converges
    quadratically; 12 iterations reach round-off for condition numbers up to ~1e6.
    ``det Q = sign(det L)``. Rotating the rows (``L R^T``) gives ``Q R^T``.
    """
    x = lattice
    for _ in range(iterations):
        xi_t = inv3(x).transpose(-1, -2)
        g = (xi_t.pow(2).sum((-1, -2)) / x.pow(2).sum((-1, -2)).clamp(min=1e-30)).pow(0.25)
        g = g.view(-1, 1, 1)
        x = 0.5 * (g * x + xi_t / g)
    return x
