"""Invariant / equivariant building blocks (pure torch scatter, e3nn spherical harmonics)."""

from __future__ import annotations

import itertools
import math

import torch
from e3nn import o3
from torch import nn

from matgen.nn._types import ConditionSpec


class CountedModule(nn.Module):
    """An ``nn.Module`` that reports its size (the denoisers' common base)."""

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Sum rows of ``src`` ``(E, ...)`` into ``size`` bins given by ``index`` ``(E,)``."""
    out = src.new_zeros((size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of rows of ``src`` per bin (empty bins give 0)."""
    total = scatter_sum(src, index, size)
    count = scatter_sum(torch.ones_like(index, dtype=src.dtype), index, size).clamp(min=1)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def atom_slots(bidx: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """``(N,)`` position of each atom inside its crystal (atoms ordered by crystal ``bidx``)."""
    start = torch.cumsum(num_atoms, 0) - num_atoms
    return torch.arange(bidx.shape[0], device=bidx.device) - start[bidx]


def to_dense(x: torch.Tensor, bidx: torch.Tensor, pos: torch.Tensor, b: int, m: int):
    """Scatter per-atom rows ``x (N, ...)`` into a zero-padded ``(B, M, ...)`` tensor at the
    crystal ``bidx`` and slot ``pos`` (:func:`atom_slots`) of each atom."""
    out = x.new_zeros((b, m, *x.shape[1:]))
    out[bidx, pos] = x
    return out


class RadialBasis(nn.Module):
    """Bessel radial basis ``sqrt(2/c) sin(n pi d / c) / d`` times a smooth polynomial envelope.

    Args:
        num: number of basis functions.
        cutoff: cutoff radius in Å; the basis and its first derivatives vanish there.
    """

    def __init__(self, num: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("freq", torch.arange(1, num + 1, dtype=torch.float32) * math.pi)

    def envelope(self, dist: torch.Tensor) -> torch.Tensor:
        """``(E,)`` polynomial envelope (p = 5) that is 1 at 0 and 0 at the cutoff."""
        x = (dist / self.cutoff).clamp(max=1.0)
        p = 5
        env = (
            1
            - (p + 1) * (p + 2) / 2 * x**p
            + p * (p + 2) * x ** (p + 1)
            - p * (p + 1) / 2 * x ** (p + 2)
        )
        return env * (dist < self.cutoff)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        """``(E,)`` distances in Å -> ``(E, num)`` basis values."""
        d = dist.unsqueeze(-1)
        x = d / self.cutoff
        rb = math.sqrt(2.0 / self.cutoff) * torch.sin(self.freq.to(d.dtype) * x) / d
        return rb * self.envelope(dist).unsqueeze(-1)


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal features of a scalar in ``[0, 1]`` (diffusion time), ``(B,) -> (B, dim)``."""

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = 1000.0 * t.unsqueeze(-1) * self.freqs.to(t.dtype)
        emb = torch.cat([torch.sin(args), torch.cos(args)], -1)
        if emb.shape[-1] < self.dim:
            emb = torch.cat([emb, emb.new_zeros(emb.shape[0], self.dim - emb.shape[-1])], -1)
        return emb


def mlp(dims: list[int], act: type[nn.Module] = nn.SiLU, last_zero: bool = False) -> nn.Sequential:
    """A plain MLP with ``act`` between layers (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), act()]
    layers.pop()
    if last_zero:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ConditionEmbedding(nn.Module):
    """Embeds named conditions into one ``(B, dim)`` vector added to the time embedding.

    Each condition has a learned null embedding used where its value is NaN (unconditioned).
    The value branch's last layer is zero-initialised, so adding a condition to a pretrained
    model (an adapter) starts from the pretrained model's behaviour.

    Args:
        specs: the conditions.
        dim: embedding width.
    """

    def __init__(self, specs: list[ConditionSpec], dim: int) -> None:
        super().__init__()
        self.specs = list(specs)
        self.value = nn.ModuleDict()
        self.null = nn.ParameterDict()
        for s in self.specs:
            if s.kind == "scalar":
                self.value[s.name] = mlp([16, dim, dim], last_zero=True)
            else:
                emb = nn.Embedding(s.num_classes, dim)
                nn.init.zeros_(emb.weight)
                self.value[s.name] = emb
            self.null[s.name] = nn.Parameter(torch.zeros(dim))
        self.register_buffer("freqs", torch.arange(1, 9, dtype=torch.float32) * 0.5)
        self.dim = dim

    def forward(
        self, cond: dict[str, torch.Tensor] | None, num_crystals: int, like: torch.Tensor
    ) -> torch.Tensor:
        """Args: ``cond`` ``{name: (B,)}`` (missing names or NaN -> null). Returns ``(B, dim)``."""
        out = like.new_zeros(num_crystals, self.dim)
        for s in self.specs:
            null = self.null[s.name].to(like.dtype)
            v = None if cond is None else cond.get(s.name)
            if v is None:  # still run the branch: every parameter takes part (DDP-friendly)
                v = like.new_full((num_crystals,), float("nan"))
            v = v.to(device=like.device, dtype=like.dtype).reshape(num_crystals)
            missing = torch.isnan(v)
            if s.kind == "scalar":
                x = ((v - s.mean) / s.std).nan_to_num(0.0).clamp(-10, 10)
                a = x.unsqueeze(-1) * self.freqs.to(x.dtype)
                e = self.value[s.name](torch.cat([torch.sin(a), torch.cos(a)], -1))
            else:
                idx = v.nan_to_num(0.0).round().long().clamp(0, s.num_classes - 1)
                e = self.value[s.name](idx).to(like.dtype)
            out = out + torch.where(missing.unsqueeze(-1), null.expand_as(e), e)
        return out


class AngularDescriptor(nn.Module):
    """Invariant per-atom angular features (power spectrum of e3nn spherical harmonics).

    ``A_i^{l,c} = sum_j R_c(d_ij) Y_l(r_ij)`` for ``l <= lmax``, then the rotation invariants
    ``sum_m (A_i^{lm,c})^2`` -> ``(N, (lmax+1) * channels)``.
    """

    def __init__(self, num_radial: int, channels: int, lmax: int = 2) -> None:
        super().__init__()
        self.irreps = o3.Irreps.spherical_harmonics(lmax)
        self.lmax = lmax
        self.radial = nn.Linear(num_radial, channels, bias=False)
        self.channels = channels

    def forward(self, vec: torch.Tensor, rbf: torch.Tensor, dst: torch.Tensor, n: int):
        y = o3.spherical_harmonics(self.irreps, vec, normalize=True, normalization="component")
        a = scatter_sum(y.unsqueeze(-1) * self.radial(rbf).unsqueeze(1), dst, n)  # (N, M, C)
        feats = []
        start = 0
        for ell in range(self.lmax + 1):
            d = 2 * ell + 1
            feats.append(a[:, start : start + d].pow(2).sum(1))
            start += d
        return torch.cat(feats, -1)


class EquivariantBlock(nn.Module):
    """One message-passing block on scalars ``s (N, F)`` and Cartesian vectors ``v (N, 3, V)``.

    Messages (gated equivariant paths, PaiNN-style): per edge, invariant filters from the
    radial basis and the neighbour's scalars give a scalar message, a gate on the neighbour's
    vectors and a weight on the unit edge vector (the l=1 spherical harmonic). The update mixes
    vector channels linearly (equivariant), and feeds vector norms and inner products back to the
    scalars. Everything is exactly O(3)-equivariant.
    """

    def __init__(self, hidden: int, vectors: int, num_radial: int, avg_neighbors: float) -> None:
        super().__init__()
        self.f, self.v = hidden, vectors
        self.norm = nn.LayerNorm(hidden)
        self.phi = mlp([hidden, hidden, hidden + 2 * vectors])
        self.filt = nn.Linear(num_radial, hidden + 2 * vectors)
        self.time = nn.Linear(hidden, hidden)
        self.u = nn.Linear(vectors, vectors, bias=False)
        self.w = nn.Linear(vectors, vectors, bias=False)
        self.upd = mlp([hidden + vectors, hidden, hidden + 2 * vectors])
        self.proj = nn.Linear(vectors, hidden, bias=False)
        self.scale = 1.0 / math.sqrt(avg_neighbors)

    def forward(self, s, v, t_emb, batch, rbf, unit, src, dst, first: bool = False):
        """Args: scalars ``(N, F)``, vectors ``(N, 3, V)`` (ignored when ``first``: all zero),
        global embedding ``(B, F)``, atom->crystal ``(N,)``, radial basis ``(E, R)``, unit edge
        vectors ``(E, 3)``, edge ends ``(E,)``. Returns updated ``(s, v)``."""
        n = s.shape[0]
        h = self.norm(s) + self.time(t_emb)[batch]
        x = self.phi(h)[src] * self.filt(rbf)
        ms, mv, mr = torch.split(x, [self.f, self.v, self.v], -1)
        dv = mr.unsqueeze(1) * unit.unsqueeze(-1)  # (E, 3, V)
        if not first:
            dv = dv + mv.unsqueeze(1) * v[src]
        agg = scatter_sum(torch.cat([ms, dv.flatten(1)], -1), dst, n) * self.scale
        s = s + agg[:, : self.f]
        v = agg[:, self.f :].view(n, 3, self.v) if first else v + agg[:, self.f :].view_as(v)
        uv, wv = self.u(v), self.w(v)
        wnorm = torch.sqrt(wv.pow(2).sum(1) + 1e-8)
        a = self.upd(torch.cat([self.norm(s), wnorm], -1))
        avv, asv, ass = torch.split(a, [self.v, self.v, self.f], -1)
        v = v + avv.unsqueeze(1) * uv
        s = s + ass + self.proj(asv * (uv * wv).sum(1))
        return s, v
