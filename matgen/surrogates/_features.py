"""Invariant crystal descriptors built from e3nn spherical harmonics (a power spectrum).

For every atom i, neighbours j within ``cutoff`` (periodic images included) are expanded as

    A_i[c, n, l, m] = sum_j  w_c(Z_j) * R_n(r_ij) * Y_lm(r_ij / |r_ij|)

with ``w_c`` a few fixed element channels (constant, electronegativity, covalent radius, row,
group), ``R_n`` Gaussian radial functions with a smooth cosine cutoff and ``Y_lm`` e3nn's real
spherical harmonics (l <= 3). The rotation-invariant power spectrum
``P_i[c, n, l] = sum_m A_i[c, n, l, m]^2`` is averaged over atoms (plain, and weighted by the
central atom's electronegativity) and joined with composition features (element fractions,
fraction-weighted element statistics), the volume per atom, density and mean neighbour count.
The result is invariant to rotations, translations, atom permutations and the choice of unit
cell, by construction.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from matgen.crystal import MAX_Z

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure


@dataclass(frozen=True)
class FeaturizerConfig:
    """Descriptor settings (saved with a predictor; changing them changes the features).

    Attributes:
        cutoff: neighbour cutoff radius, Å.
        n_radial: Gaussian radial functions between ``r_min`` and ``cutoff``.
        l_max: largest spherical-harmonic degree.
        r_min: centre of the first radial Gaussian, Å.
    """

    cutoff: float = 6.0
    n_radial: int = 8
    l_max: int = 3
    r_min: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)


N_CHANNELS = 5
N_ELEM_STATS = 4


@functools.lru_cache(maxsize=1)
def element_table() -> torch.Tensor:
    """``(MAX_Z + 1, 5)`` standardised element channels: 1, X, covalent radius, row, group."""
    from pymatgen.core import Element

    rows = np.zeros((MAX_Z + 1, N_CHANNELS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            x = el.X if el.X is not None and math.isfinite(el.X) else np.nan
            r = el.atomic_radius_calculated or el.atomic_radius or np.nan
            rows[z] = [1.0, x, float(r), el.row, el.group]
    props = rows[1:, 1:]
    mean, std = np.nanmean(props, 0), np.nanstd(props, 0)
    props = np.where(np.isnan(props), mean, props)
    rows[1:, 1:] = (props - mean) / std
    return torch.as_tensor(rows, dtype=torch.float32)


def feature_dim(cfg: FeaturizerConfig | None = None) -> int:
    """Length of the descriptor vector."""
    cfg = cfg or FeaturizerConfig()
    p = N_CHANNELS * cfg.n_radial * (cfg.l_max + 1)
    return 2 * p + MAX_Z + 4 * N_ELEM_STATS + 3


def featurize(structures: list[Structure], config: FeaturizerConfig | None = None) -> torch.Tensor:
    """Descriptors of ``structures``.

    Args:
        structures: B ordered pymatgen structures.
        config: :class:`FeaturizerConfig`.

    Returns:
        ``(B, feature_dim)`` float32; a structure that cannot be featurised gives a NaN row.
    """
    cfg = config or FeaturizerConfig()
    out = torch.full((len(structures), feature_dim(cfg)), math.nan)
    for i, s in enumerate(structures):
        with contextlib.suppress(Exception):  # a NaN row; the caller names the structure
            out[i] = _featurize_one(s, cfg)
    return out


def _featurize_one(s: Structure, cfg: FeaturizerConfig) -> torch.Tensor:
    from e3nn import o3

    table = element_table()
    z = torch.as_tensor([site.specie.Z for site in s], dtype=torch.long)
    n = len(s)
    center, nbr, images, _ = s.get_neighbor_list(r=cfg.cutoff, numerical_tol=1e-8)
    lat = torch.tensor(np.array(s.lattice.matrix), dtype=torch.float64)
    cart = torch.as_tensor(s.cart_coords, dtype=torch.float64)
    center = torch.as_tensor(center, dtype=torch.long)
    nbr = torch.as_tensor(nbr, dtype=torch.long)
    vec = cart[nbr] + torch.as_tensor(images, dtype=torch.float64) @ lat - cart[center]
    r = vec.norm(dim=1)
    keep = r > 1e-6
    center, nbr, vec, r = center[keep], nbr[keep], vec[keep].float(), r[keep].float()
    mu = torch.linspace(cfg.r_min, cfg.cutoff, cfg.n_radial)
    width = (cfg.cutoff - cfg.r_min) / (cfg.n_radial - 1)
    env = 0.5 * (torch.cos(math.pi * r / cfg.cutoff) + 1.0)
    radial = torch.exp(-(((r[:, None] - mu) / width) ** 2)) * env[:, None]  # (E, n_rad)
    sh = o3.spherical_harmonics(
        list(range(cfg.l_max + 1)), vec, normalize=True, normalization="component"
    )  # (E, (l_max+1)^2)
    w = table[z[nbr]]  # (E, C)
    edge = w[:, :, None, None] * radial[:, None, :, None] * sh[:, None, None, :]
    a = torch.zeros(n, *edge.shape[1:]).index_add_(0, center, edge)  # (n, C, R, lm)
    ls = torch.cat([torch.full((2 * l + 1,), l) for l in range(cfg.l_max + 1)])
    p = torch.zeros(n, N_CHANNELS, cfg.n_radial, cfg.l_max + 1).index_add_(3, ls, a**2)
    p = p.flatten(1)
    p = torch.sign(p) * torch.sqrt(p.abs())  # tame the growth with neighbour count
    x_center = table[z, 1:2]
    local = torch.cat([p.mean(0), (x_center * p).mean(0)])
    frac = torch.zeros(MAX_Z).index_add_(0, z - 1, torch.full((n,), 1.0 / n))
    props = table[z, 1:]  # (n, 4)
    stats = torch.cat([props.mean(0), props.std(0, unbiased=False), props.min(0).values,
                       props.max(0).values])
    glob = torch.tensor(
        [s.volume / n, float(s.density), len(center) / n / 10.0], dtype=torch.float32
    )
    return torch.cat([local, frac, stats, glob])
