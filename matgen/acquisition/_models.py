"""BoTorch models over candidate features: GPs fitted on oracle labels, or a pool ensemble.

Two ways to get a posterior over the properties of the candidates in a discrete pool:

* :func:`fit_gp_models` fits one :class:`~botorch.models.SingleTaskGP` per property on the
  labelled candidates (missing labels are allowed per property) and returns a
  :class:`~botorch.models.ModelListGP`; with a :class:`PredictorPrior` each GP starts from a
  property predictor (its mean as the GP's prior mean, its per-candidate standard deviation
  scaling the kernel) and the labels correct it where they are informative;
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
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.means import Mean
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


@dataclass(frozen=True)
class PredictorPrior:
    """Where a property predictor's outputs sit among the (standardised) feature columns.

    Output ``k`` of :func:`fit_gp_models` then gets the GP

        y_k(x) ~ GP(bias_k + mu_k(x), c_k^2 * s_k(x) s_k(x') * Matern52_ARD(x, x'))

    with ``mu_k`` / ``s_k`` the predictor's mean and standard deviation (columns
    ``mean_columns[k]`` / ``std_columns[k]``, read back in property units through ``scaler``),
    ``bias_k`` and ``c_k`` learned, and the Matern kernel over every column except the std
    columns. Far from the labels the posterior is the predictor with its own per-candidate
    uncertainty (rescaled by one factor per output, so an over-confident predictor is widened);
    near them it follows the labels. Labels are treated as nearly exact (``label_noise``), so the
    residual the predictor leaves is explained by the kernel, not written off as noise.

    Attributes:
        mean_columns: one column per model output holding the predictor's mean.
        std_columns: one column per model output holding its standard deviation (> 0).
        scaler: the :class:`FeatureScaler` that standardised the features.
        label_noise: label noise variance, in squared property units.
    """

    mean_columns: tuple[int, ...]
    std_columns: tuple[int, ...]
    scaler: FeatureScaler
    label_noise: float = 1e-4

    def __post_init__(self) -> None:
        if len(self.mean_columns) != len(self.std_columns):
            raise ValueError("one mean column and one std column per output")

    @classmethod
    def standardise(cls, raw: torch.Tensor) -> tuple[torch.Tensor, PredictorPrior]:
        """``raw (n, 2m)``: the predicted means of ``m`` outputs, then their standard
        deviations. Returns the standardised features and the prior that reads them."""
        m = raw.shape[1] // 2
        scaler = FeatureScaler.fit(raw)
        return scaler(raw), cls(tuple(range(m)), tuple(range(m, 2 * m)), scaler)


class _ColumnMean(Mean):
    """``bias + weight * x[..., column] + offset`` with ``weight`` / ``offset`` fixed."""

    def __init__(self, column: int, weight: float, offset: float) -> None:
        super().__init__()
        self.column, self.weight, self.offset = column, weight, offset
        self.register_parameter("bias", torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias + self.weight * x[..., self.column] + self.offset


class _ColumnScaleKernel(Kernel):
    """``s(x) s(x')`` with ``s(x) = weight * x[..., column] + offset`` (a rank-one kernel)."""

    def __init__(self, column: int, weight: float, offset: float) -> None:
        super().__init__()
        self.column, self.weight, self.offset = column, weight, offset

    def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
        s1 = (self.weight * x1[..., self.column] + self.offset).clamp_min(1e-6)
        s2 = (self.weight * x2[..., self.column] + self.offset).clamp_min(1e-6)
        return s1 * s2 if diag else s1.unsqueeze(-1) * s2.unsqueeze(-2)


def _prior_gp(x: torch.Tensor, y: torch.Tensor, k: int, prior: PredictorPrior) -> SingleTaskGP:
    """The GP of output ``k`` around the predictor (see :class:`PredictorPrior`)."""
    gp = SingleTaskGP(
        x, y, train_Yvar=torch.full_like(y, prior.label_noise), outcome_transform=Standardize(m=1)
    )
    # the GP works on standardised labels: map property units through the outcome transform
    y_mean = float(gp.outcome_transform.means.squeeze())
    y_std = float(gp.outcome_transform.stdvs.squeeze())
    sc = prior.scaler
    cm, cs = prior.mean_columns[k], prior.std_columns[k]
    gp.mean_module = _ColumnMean(
        cm, float(sc.scale[cm]) / y_std, (float(sc.mean[cm]) - y_mean) / y_std
    )
    dims = [j for j in range(x.shape[-1]) if j not in set(prior.std_columns)]
    matern = MaternKernel(nu=2.5, ard_num_dims=len(dims), active_dims=dims)
    gp.covar_module = ScaleKernel(matern) * _ColumnScaleKernel(
        cs, float(sc.scale[cs]) / y_std, float(sc.mean[cs]) / y_std
    )
    return gp.to(torch.float64)


def fit_gp_models(
    x: torch.Tensor, y: torch.Tensor, seed: int = 0, prior: PredictorPrior | None = None
) -> ModelListGP:
    """Fit one exact GP per output on the labelled rows.

    Args:
        x: ``(n, d)`` standardised features of the labelled candidates.
        y: ``(n, m)`` labels; NaN marks a missing label (that row is left out of that output).
        seed: torch seed used while fitting (the fit is deterministic given it).
        prior: a property predictor's columns in ``x``: each GP then starts from the predictor
            (:class:`PredictorPrior`); None: a plain GP (constant mean, Matern kernel).

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
            if prior is not None:
                gp = _prior_gp(x[ok], y[ok, k : k + 1], k, prior)
            else:
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

    @classmethod
    def from_predictions(
        cls, choices: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, seed: int = 0
    ) -> PoolEnsembleModel:
        """The posterior a scorer's predictions give when no GP can be fitted (too few labels,
        or a failed fit): a missing mean (NaN) becomes the column's mean over the pool (0 when
        the whole column is missing) with three times its std."""
        fill = torch.nanmean(mean, 0).nan_to_num(0.0).expand_as(mean)
        std = torch.where(torch.isnan(mean), std * 3, std)
        mean = torch.where(torch.isnan(mean), fill, mean)
        return cls(choices, mean, std, seed=seed)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``batch x n x d`` inputs -> ``batch x s x n x m`` member values."""
        flat = X.reshape(-1, X.shape[-1]).to(torch.float64)
        idx = torch.cdist(flat, self.choices).argmin(-1)
        vals = self.members[:, idx]  # s x (batch*n) x m
        vals = vals.reshape(vals.shape[0], *X.shape[:-1], vals.shape[-1])
        return vals.movedim(0, -3)
