"""BoTorch models over candidate features: GPs fitted on oracle labels, or a pool ensemble.

Two ways to get a posterior over the properties of the candidates in a discrete pool:

* :func:`fit_gp_models` fits one :class:`~botorch.models.SingleTaskGP` per property on the
  labelled candidates (missing labels are allowed per property) and returns a
  :class:`~botorch.models.ModelListGP`;
* :class:`PoolEnsembleModel` turns per-candidate predicted means and standard deviations (for
  example a surrogate ensemble) into a BoTorch ensemble posterior, so the same acquisition code
  runs before any label exists.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.ensemble import EnsembleModel
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood


@dataclass(frozen=True)
class FeatureScaler:
    """Affine standardisation of features, fitted once on the whole pool.

    Attributes:
        mean: ``(d,)`` feature means.
        scale: ``(d,)`` feature standard deviations (1 where a feature is constant).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> FeatureScaler:
        """Fit on ``x``: ``(n, d)``."""
        x = x.to(torch.float64)
        std = x.std(0)
        return cls(x.mean(0), torch.where(std > 1e-12, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised ``(n, d)`` float64 features (clipped to +-6 sigma)."""
        return ((x.to(torch.float64) - self.mean) / self.scale).clamp(-6.0, 6.0)


def fit_gp_models(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> ModelListGP:
    """Fit one exact GP per output on the labelled rows.

    Args:
        x: ``(n, d)`` standardised features of the labelled candidates.
        y: ``(n, m)`` labels; NaN marks a missing label (that row is left out of that output).
        seed: torch seed used while fitting (the fit is deterministic given it).

    Returns:
        A :class:`ModelListGP` with ``m`` outputs, in the column order of ``y``.

    Raises:
        ValueError: if an output has fewer than two labels.
    """
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    models = []
    with torch.random.fork_rng(), warnings.catch_warnings():
        # standardised (not min-max scaled) inputs are intended: silence BoTorch's check
        warnings.simplefilter("ignore", InputDataWarning)
        torch.manual_seed(seed)
        for k in range(y.shape[1]):
            ok = ~torch.isnan(y[:, k])
            if int(ok.sum()) < 2:
                raise ValueError(f"output {k} has {int(ok.sum())} labels; a GP needs at least 2")
            gp = SingleTaskGP(x[ok], y[ok, k : k + 1], outcome_transform=Standardize(m=1))
            mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
            try:
                fit_gpytorch_mll(mll)
            except Exception:  # noqa: BLE001 - keep the prior hyper-parameters on a failed fit
                gp.eval()
            models.append(gp)
    return ModelListGP(*models)


class PoolEnsembleModel(EnsembleModel):
    """An ensemble posterior over a fixed pool from per-candidate means and std deviations.

    Each of ``num_members`` members is a draw ``mean + std * eps`` with a fixed standard normal
    ``eps`` per candidate and output, so the posterior is reproducible. Inputs are matched to
    pool rows by nearest neighbour in feature space (the acquisition only ever asks about pool
    rows).

    Args:
        choices: ``(P, d)`` pool features (as passed to the acquisition optimiser).
        mean: ``(P, m)`` predicted means.
        std: ``(P, m)`` predicted standard deviations (>= 0).
        num_members: ensemble size ``s``.
        seed: seed of the draws.
    """

    def __init__(
        self,
        choices: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        num_members: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        eps = torch.randn((num_members, *mean.shape), generator=gen, dtype=torch.float64)
        self.choices = choices.to(torch.float64)
        self.members = mean.to(torch.float64) + std.to(torch.float64).clamp_min(0) * eps
        self._num_outputs = mean.shape[-1]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``batch x n x d`` inputs -> ``batch x s x n x m`` member values."""
        flat = X.reshape(-1, X.shape[-1]).to(torch.float64)
        idx = torch.cdist(flat, self.choices).argmin(-1)
        vals = self.members[:, idx]  # s x (batch*n) x m
        vals = vals.reshape(vals.shape[0], *X.shape[:-1], vals.shape[-1])
        return vals.movedim(0, -3)
