"""Closed-form 3x3 linear algebra (no solver calls, no host synchronisation on GPUs)."""

from __future__ import annotations

import torch


def cofactor_rows(lattice: torch.Tensor) -> torch.Tensor:
    """Rows ``(b x c, c x a, a x b)`` of a batch of 3x3 matrices ``(B, 3, 3)`` with rows a, b, c.

    ``lattice @ cofactor_rows(lattice).T == det * I``, so ``inv = cofactor_rows.T / det``.
    """
    return torch.linalg.cross(lattice.roll(-1, -2), lattice.roll(-2, -2))


def det3(lattice: torch.Tensor) -> torch.Tensor:
    """Signed determinant ``(B,)`` of ``(B, 3, 3)`` matrices (triple product of the rows)."""
    a, b, c = lattice.unbind(-2)
    return (a * torch.linalg.cross(b, c)).sum(-1)


def _safe(d: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.where(d >= 0, d.clamp(min=eps), d.clamp(max=-eps))


def inv3(lattice: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Inverse ``(B, 3, 3)``; determinants are kept at least ``eps`` away from 0."""
    return cofactor_rows(lattice).transpose(-1, -2) / _safe(det3(lattice), eps).view(-1, 1, 1)


def polar_rotation(lattice: torch.Tensor, iterations: int = 7) -> torch.Tensor:
    """Orthogonal factor Q of the polar decomposition ``L = S Q`` (S symmetric positive).

    Scaled Newton iteration ``X <- (g X + X^-T / g) / 2`` (Higham) with Frobenius scaling,
    which converges quadratically: 6 iterations reach float64 round-off for condition numbers
    up to 1e4 (checked against the SVD). ``det Q = sign(det L)``; rotating the rows
    (``L R^T``) gives ``Q R^T``. Few small kernels and no host synchronisation on GPUs.
    """
    x = lattice
    for _ in range(iterations):
        cof = cofactor_rows(x)
        det = _safe((x * cof).sum((-1, -2), keepdim=True) / 3, 1e-30)
        xit = cof / det  # X^-T
        g = xit.square().sum((-1, -2), keepdim=True) / x.square().sum((-1, -2), keepdim=True)
        g = g.clamp(min=1e-30).pow(0.25)
        x = 0.5 * (g * x + xit / g)
    return x
