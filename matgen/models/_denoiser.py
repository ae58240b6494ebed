"""The equivariant crystal denoiser."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from matgen.crystal import MAX_Z, CrystalBatch
from matgen.models._dense import DenseDenoiser
from matgen.nn import (
    AngularDescriptor,
    ConditionEmbedding,
    ConditionSpec,
    CountedModule,
    DenoiserOutput,
    EquivariantBlock,
    RadialBasis,
    SinusoidalEmbedding,
    det3,
    mlp,
    periodic_radius_graph,
    scatter_mean,
    scatter_sum,
)


class DenoiserConfig(BaseModel):
    """Hyper-parameters of :class:`CrystalDenoiser`.

    Attributes:
        arch: ``radius`` (:class:`CrystalDenoiser`, equivariant message passing on the
            periodic cutoff graph, exactly invariant to the choice of lattice basis) or
            ``dense`` (:class:`~matgen.models._dense.DenseDenoiser`, all atom pairs of the cell
            with Fourier features of fractional differences; basis-dependent: train it on
            Niggli-reduced cells). ``dense`` uses only ``hidden``, ``layers``, ``num_freqs``,
            ``pad_atoms``, ``size_groups``, ``cpu_size_groups``, ``dropout``,
            ``self_condition``, ``distance_rbf``, ``distance_max``, ``edge_update``,
            ``conditions`` and ``num_types``.
        hidden: invariant (scalar, l=0) channels per atom.
        vectors: equivariant (vector, l=1) channels per atom.
        layers: message-passing blocks.
        num_radial: Bessel radial basis functions.
        angular_channels: radial channels of the l<=2 spherical-harmonic power spectrum.
        cutoff: neighbour radius in Å (edges go to every periodic image inside it).
        max_images: cap on cells searched per lattice direction (only bites on degenerate cells).
        avg_neighbors: message-sum normalisation (about the mean number of neighbours).
        conditions: properties the model can be conditioned on (classifier-free guidance ready).
        num_types: element classes of the type logits (class k is Z = k + 1).
        num_freqs: ``dense``: Fourier frequencies ``k = 1..K`` per fractional axis.
        pad_atoms: ``dense``: pad every batch to at least this many atoms per crystal (fixed
            tensor shapes for compiled training; 0 pads to the batch's largest crystal).
        size_groups: ``dense``: split each batch into this many groups of similar crystal
            size, each padded to its own largest crystal (same outputs, about half the work
            at 4 groups on MP-20; 1 = one padded batch). On a GPU the extra kernel launches
            cost more than the saved work (twice the speed at 1 group on an H200: README),
            so 1 suits GPUs.
        cpu_size_groups: ``dense``: the groups used instead when the model runs on a CPU,
            where the arithmetic is what costs (4 groups halve the CPU time per forward on
            MP-20 sizes). Outputs do not depend on it.
        dropout: ``dense``: dropout on each layer's residual update (training only).
        self_condition: ``dense``: the network also takes its previous estimate of the clean
            crystal (:class:`~matgen.nn.CleanEstimate`; zero-initialised branches, so weights
            of a model without them load unchanged). Train it with
            ``DiffusionConfig.self_condition > 0``.
        distance_rbf: ``dense``: Gaussians on each pair's minimum-image distance added to the
            edge embedding (zero-initialised branch); 0 = no distance features.
        distance_max: ``dense``: the Gaussians' centres span [0, distance_max] Å.
        edge_update: ``dense``: each block adds a zero-initialised projection of its
            messages to the edge embedding of the next.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Literal["radius", "dense"] = "radius"
    hidden: int = 128
    vectors: int = 32
    layers: int = 4
    num_radial: int = 16
    angular_channels: int = 16
    cutoff: float = 6.0
    max_images: int = 8
    avg_neighbors: float = 30.0
    conditions: list[ConditionSpec] = Field(default_factory=list)
    num_types: int = MAX_Z
    num_freqs: int = Field(default=32, ge=1)
    pad_atoms: int = Field(default=0, ge=0)
    size_groups: int = Field(default=1, ge=1)
    cpu_size_groups: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    self_condition: bool = False
    distance_rbf: int = Field(default=0, ge=0)
    distance_max: float = Field(default=8.0, gt=0.0)
    edge_update: bool = False

    @model_validator(mode="after")
    def _dense_options_need_dense(self) -> DenoiserConfig:
        if self.arch != "dense":
            for name in ("self_condition", "distance_rbf", "edge_update"):
                if getattr(self, name):
                    raise ValueError(f"{name} needs arch: dense")
        return self


class CrystalDenoiser(CountedModule):
    """E(3)-equivariant message-passing denoiser on the periodic cutoff graph.

    Symmetries (exact, see :func:`matgen.testing.symmetry.check_symmetries`): rotations and
    reflections of the Cartesian frame, permutations of atoms, fractional translations, and
    unimodular changes of lattice basis. The last one holds because the network sees the
    lattice only through basis-independent quantities: Cartesian edge vectors to all periodic
    images within the cutoff (a complete set for any cell), their lengths and spherical
    harmonics, and the volume per atom. Gram-matrix and Fourier-of-fractional-difference
    features (as in DiffCSP's CSPNet) are deliberately not used: they depend on the chosen
    basis and would break that symmetry.

    Outputs: a Cartesian l=1 vector per atom ``c_i`` turned into a fractional-space score
    ``c_i L^T / V^(1/3)``; a symmetric Cartesian rank-2 tensor per crystal
    ``T = sum_edges w_e u_e u_e^T / N + (iso) I + sum_c v_c v_c^T / N`` (l=0 + l=2 content)
    giving ``lattice = L T / V^(1/3)``; type logits from the invariant scalars.

    Args:
        cfg: the configuration (build it with :func:`build_denoiser`).
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f, v = cfg.hidden, cfg.vectors
        self.embed = nn.Embedding(MAX_Z + 1, f)  # index 0 = masked / unknown type
        self.rbf = RadialBasis(cfg.num_radial, cfg.cutoff)
        self.time = nn.Sequential(SinusoidalEmbedding(f), *mlp([f, f, f]))
        self.volume = mlp([8, f, f])
        self.register_buffer("vol_freqs", torch.arange(1, 5, dtype=torch.float32))
        self.cond = ConditionEmbedding(list(cfg.conditions), f)
        self.angular = AngularDescriptor(cfg.num_radial, cfg.angular_channels, lmax=2)
        self.angular_mlp = mlp([3 * cfg.angular_channels, f, f])
        self.blocks = nn.ModuleList(
            EquivariantBlock(f, v, cfg.num_radial, cfg.avg_neighbors) for _ in range(cfg.layers)
        )
        self.out_norm = nn.LayerNorm(f)
        self.coord_gate = mlp([f, f, v])
        self.type_head = mlp([f, f, cfg.num_types])
        self.lat_node = mlp([f, f, 2])  # edge weight factor, isotropic part
        self.lat_rbf = nn.Linear(cfg.num_radial, 1)
        self.lat_vec = nn.Linear(v, 4, bias=False)
        self.lat_vec_w = mlp([f, f, 4])

    def forward(
        self,
        batch: CrystalBatch,
        t: torch.Tensor,
        cond: dict[str, torch.Tensor] | None = None,
    ) -> DenoiserOutput:
        """Denoise a noisy batch.

        Args:
            batch: noisy crystals; ``atomic_numbers`` may hold 0 for a masked type.
            t: ``(B,)`` diffusion time in ``[0, 1]``.
            cond: ``{name: (B,)}`` condition values; NaN or absent means unconditioned.

        Returns:
            :class:`DenoiserOutput` with ``coord (N, 3)``, ``lattice (B, 3, 3)``,
            ``type_logits (N, K)``.
        """
        lat = batch.lattice
        na = batch.num_atoms
        b, n = lat.shape[0], batch.frac_coords.shape[0]
        dt = lat.dtype
        no_autocast = torch.autocast(lat.device.type, enabled=False)
        bidx = torch.repeat_interleave(torch.arange(b, device=lat.device), na, output_size=n)
        with no_autocast:  # geometry stays in full precision under mixed-precision training
            g = periodic_radius_graph(
                batch.frac_coords, lat, na, self.cfg.cutoff, self.cfg.max_images
            )
            unit = g.vec / g.dist.unsqueeze(-1)
            rbf = self.rbf(g.dist)
            vol = det3(lat).abs().clamp(min=1e-6)
            lscale = vol.pow(1.0 / 3.0).clamp(min=0.5)
            lv = torch.log(vol / na.to(dt)).unsqueeze(-1) * self.vol_freqs.to(dt) / 4
            ang = self.angular(g.vec, rbf, g.dst, n)

        glob = self.time(t.to(dt)) + self.volume(torch.cat([lv.sin(), lv.cos()], -1))
        glob = glob + self.cond(cond, b, lat)
        s = self.embed(batch.atomic_numbers) + self.angular_mlp(ang)
        v = s.new_zeros(n, 3, self.cfg.vectors)
        for k, blk in enumerate(self.blocks):
            s, v = blk(s, v, glob, bidx, rbf, unit, g.src, g.dst, first=k == 0)

        h = self.out_norm(s) + glob[bidx]
        gate = self.coord_gate(h)
        type_logits = self.type_head(h).to(dt)
        nd = self.lat_node(h).to(dt)
        lat_w = self.lat_rbf(rbf).squeeze(-1).to(dt)
        lv_ = self.lat_vec(v).to(dt)  # (N, 3, 4)
        lv_w = self.lat_vec_w(h).to(dt)
        with no_autocast:
            cart = (v.to(dt) * gate.to(dt).unsqueeze(1)).sum(-1)  # (N, 3) Cartesian l=1
            coord = torch.einsum("ni,nji->nj", cart, lat[bidx]) / lscale[bidx].unsqueeze(-1)
            w = (nd[g.src, 0] + nd[g.dst, 0]) * lat_w
            uu = unit.unsqueeze(-1) * unit.unsqueeze(-2)
            nf = na.to(dt).view(-1, 1, 1)
            tens = scatter_sum(w.view(-1, 1, 1) * uu, g.edge_crystal, b) / nf
            iso = scatter_mean(nd[:, 1:2], bidx, b)
            tens = tens + iso.unsqueeze(-1) * torch.eye(3, dtype=dt, device=lat.device)
            vv = torch.einsum("nic,njc,nc->nij", lv_, lv_, lv_w)
            tens = tens + scatter_sum(vv, bidx, b) / nf
            lattice = lat @ tens / lscale.view(-1, 1, 1)
        return DenoiserOutput(coord=coord, lattice=lattice, type_logits=type_logits)


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    """Build a freshly initialised denoiser of ``cfg.arch`` (see :class:`DenoiserConfig`)."""
    if cfg.arch == "dense":
        return DenseDenoiser(cfg)
    return CrystalDenoiser(cfg)
