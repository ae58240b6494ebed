"""The dense all-pairs crystal denoiser (``DenoiserConfig.arch == "dense"``).

Every atom exchanges messages with every atom of its cell (no cutoff, no periodic images);
the periodicity enters through Fourier features of the fractional differences
``sin / cos(2 pi k (f_j - f_i))``, the cell through the shape of its Gram matrix ``L L^T`` and
its volume per atom. The same ingredients as DiffCSP's CSPNet (Jiao et al., 2023), laid out
densely: each crystal is padded to ``M`` atoms, so a layer is a handful of large batched
matrix products on a ``(B, M, M, F)`` edge tensor instead of thousands of small scatter
kernels (the radius-graph denoiser is kernel-launch bound on a GPU).

Symmetries: exact invariance to rotations and reflections of the Cartesian frame (the lattice
enters only through ``L L^T``; the lattice output is ``A(L L^T) L``, which rotates with ``L``),
to permutations of atoms and to fractional translations. It is NOT invariant to a change of
lattice basis ``L -> U L`` (unimodular ``U``): the Gram matrix and the fractional coordinates
depend on the chosen basis. Training data are therefore Niggli-reduced (``data.reduce: niggli``
in the train config), which picks one basis per lattice; tests/models/test_dense.py checks
both the exact symmetries and that basis-changed copies of a crystal agree after reduction.

Pair distances (``cfg.distance_rbf`` > 0): the Cartesian distance of every pair to its nearest
periodic image (among the 27 neighbouring cells, enough for a reduced cell; an atom to its own
nearest image: the shortest lattice vector), expanded in Gaussians and added to the edge
embedding through a zero-initialised branch. Distances are invariant to rotations,
reflections, permutations and translations, and to the lattice basis whenever the nearest image
lies among the 27 cells, so they add no symmetry the module did not have. Edge updates
(``cfg.edge_update``): each block adds a zero-initialised projection of its messages to the edge
embedding the next block reads (a pair representation that evolves with the atoms). Both start
as the identity, so weights of a model without them load and compute the same.

Self-conditioning (``cfg.self_condition``): the previous estimate of the clean crystal enters
through the same ingredients, Fourier features of its fractional differences added to the edge
embedding and its cell descriptors added to the global embedding, so the symmetries above hold
with the estimate transformed along with the crystal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from matgen.crystal import MAX_Z, CrystalBatch
from matgen.nn import (
    CleanEstimate,
    ConditionEmbedding,
    CountedModule,
    DenoiserOutput,
    SinusoidalEmbedding,
    atom_slots,
    det3,
    mlp,
    to_dense,
)


def lattice_features(lat: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
    """Rotation-invariant cell descriptors ``(B, 7)``: log edge lengths relative to ``V^(1/3)``,
    the three cosines of the cell angles and the log volume per atom (centred at 10 Å^3)."""
    vol = det3(lat).abs().clamp(min=1e-6)
    gram = lat @ lat.transpose(-1, -2)
    diag = torch.diagonal(gram, dim1=-2, dim2=-1).clamp(min=1e-12)
    lengths = diag.sqrt()
    loglen = torch.log(lengths / vol.pow(1.0 / 3.0).unsqueeze(-1))
    pairs = ((1, 2), (0, 2), (0, 1))
    cos = torch.stack([gram[:, i, j] / (lengths[:, i] * lengths[:, j]) for i, j in pairs], -1)
    lvpa = torch.log(vol / num_atoms.to(lat.dtype)) - math.log(10.0)
    return torch.cat([loglen, cos, lvpa.unsqueeze(-1)], -1)


def pair_distances(f: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Minimum-image Cartesian distances ``(B, M, M)`` of dense fractional coordinates
    ``f (B, M, 3)`` in cells ``lat (B, 3, 3)`` (rows are the cell vectors): the fractional
    differences are wrapped to [-0.5, 0.5) and the nearest of the 27 neighbouring images taken;
    on the diagonal the zero image is left out (an atom's distance to its own nearest copy)."""
    df = f.unsqueeze(1) - f.unsqueeze(2)
    df = df - torch.round(df)
    cart = df @ lat.unsqueeze(1)  # (B, M, M, 3)
    k = torch.arange(27, device=f.device)  # the 27 neighbouring cells, made on the device (no
    images = torch.stack([k // 9, k // 3 % 3, k % 3], -1).to(lat.dtype) - 1  # copy, no sync)
    shifts = images @ lat  # (B, 27, 3); image 13 is the cell itself
    d2 = (cart.square().sum(-1, keepdim=True) + shifts.square().sum(-1)[:, None, None, :]
          + 2.0 * torch.einsum("bijc,bkc->bijk", cart, shifts))
    m = f.shape[1]
    self_zero = torch.eye(m, dtype=torch.bool, device=f.device)[None, :, :, None] & (k == 13)
    d2 = d2.masked_fill(self_zero, float("inf"))
    return d2.amin(-1).clamp(min=0.0).sqrt()


def size_plan(num_atoms: torch.Tensor, groups: int, pad: int = 0):
    """How a batch is split into ``groups`` groups of similar crystal size (equal counts).

    Computed on the host from one copy of ``num_atoms`` (the only wait for the GPU in a
    forward pass). Returns ``[(crystal index, atom index, padded size)]`` with index tensors on
    ``num_atoms``' device, or ``[(None, None, padded size)]`` for a single group.
    """
    na = num_atoms.detach().cpu()
    b = int(na.shape[0])
    if groups <= 1 or b < 2 * groups:
        return [(None, None, max(int(na.max()) if b else 1, pad))]
    order = torch.argsort(na, stable=True)
    group = torch.empty(b, dtype=torch.long)
    group[order] = torch.arange(b) * groups // b
    agroup = torch.repeat_interleave(group, na)
    dev = num_atoms.device
    plan = []
    for k in range(groups):
        sel = torch.nonzero(group == k).squeeze(-1)
        atoms = torch.nonzero(agroup == k).squeeze(-1)
        m = max(int(na[sel].max()), pad)
        plan.append((sel.to(dev, non_blocking=True), atoms.to(dev, non_blocking=True), m))
    return plan


class DenseBlock(nn.Module):
    """One all-pairs message-passing layer on node features ``h (B, M, F)``.

    ``m_ij = MLP(A x_i + B x_j + E e_ij + G g)`` with ``x = LayerNorm(h)``, the edge
    embedding ``e_ij``, the per-crystal global embedding ``g``; ``h_i += MLP([x_i, mean_j m_ij])``
    over the real (unpadded) atoms ``j``.
    """

    def __init__(self, hidden: int, dropout: float = 0.0, edge_update: bool = False) -> None:
        super().__init__()
        f = hidden
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(f)
        self.src = nn.Linear(f, f)
        self.dst = nn.Linear(f, f, bias=False)
        self.edge = nn.Linear(f, f, bias=False)
        self.glob = nn.Linear(f, f, bias=False)
        self.msg = nn.Sequential(nn.SiLU(), nn.Linear(f, f), nn.SiLU())
        self.node = mlp([2 * f, f, f])
        # zero-initialised: the block starts as one without it
        self.edge_out = mlp([f, f], last_zero=True) if edge_update else None

    def zero_output_(self) -> None:
        """Zero the node update's last layer: the block then passes ``h`` through unchanged
        (a block appended to a trained network starts as the identity, see
        :func:`matgen.training.load_init_weights`)."""
        for out in (self.node, self.edge_out):
            if out is not None:
                nn.init.zeros_(out[-1].weight)
                nn.init.zeros_(out[-1].bias)

    def forward(self, h, e, g, mask, inv_count):
        """``h (B, M, F)``, ``e (B, M, M, F)``, ``g (B, F)``, ``mask (B, M)`` float,
        ``inv_count (B, 1, 1)``; returns the updated ``(h, e)`` (``e`` unchanged without
        edge updates)."""
        x = self.norm(h)
        pre = (self.src(x) + self.glob(g).unsqueeze(1)).unsqueeze(2) + self.dst(x).unsqueeze(1)
        m = self.msg(pre + self.edge(e))
        agg = torch.einsum("bijf,bj->bif", m, mask) * inv_count
        if self.edge_out is not None:
            e = e + self.edge_out(m)
        return h + self.drop(self.node(torch.cat([x, agg], -1))), e


class DenseDenoiser(CountedModule):
    """All-pairs periodic denoiser; same inputs and outputs as :class:`CrystalDenoiser`.

    Outputs: the fractional-space coordinate score read from each atom's features (it is
    translation invariant because only differences of coordinates enter); the lattice noise
    ``A L / V^(1/3)`` with ``A (B, 3, 3)`` read from the mean atom feature (rotation-equivariant);
    type logits per atom.

    Args:
        cfg: a :class:`~matgen.models.DenoiserConfig` with ``arch == "dense"`` (uses
            ``hidden``, ``layers``, ``num_freqs``, ``pad_atoms``, ``size_groups``, ``dropout``,
            ``conditions``, ``num_types``).
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.hidden
        self.embed = nn.Embedding(MAX_Z + 1, f)  # index 0 = masked / unknown type
        self.time = nn.Sequential(SinusoidalEmbedding(f), *mlp([f, f, f]))
        self.cell = mlp([7, f, f])
        self.cond = ConditionEmbedding(list(cfg.conditions), f)
        k = cfg.num_freqs
        self.register_buffer("freqs", torch.arange(1, k + 1, dtype=torch.float32))  # exact ints
        self.edge_in = mlp([6 * k, f, f])
        if cfg.distance_rbf:  # Gaussians on [0, distance_max] Å, zero-initialised branch
            self.register_buffer("rbf_centres", torch.linspace(
                0.0, cfg.distance_max, cfg.distance_rbf), persistent=False)  # from the config
            self.dist_edge = mlp([cfg.distance_rbf, f, f], last_zero=True)
        self.blocks = nn.ModuleList(DenseBlock(f, cfg.dropout, cfg.edge_update)
                                    for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(f)
        self.coord_head = mlp([f, f, 3])
        self.lattice_head = mlp([f, f, 9])
        self.type_head = mlp([f, f, cfg.num_types])
        if cfg.self_condition:  # zero-initialised: the model starts as one without them
            self.sc_edge = mlp([6 * k, f, f], last_zero=True)
            self.sc_cell = mlp([7, f, f], last_zero=True)

    def _fourier(self, df: torch.Tensor) -> torch.Tensor:
        a = (2 * math.pi) * (df.unsqueeze(-1) * self.freqs.to(df.dtype)).flatten(-2)
        return torch.cat([torch.sin(a), torch.cos(a)], -1)

    def forward(
        self,
        batch: CrystalBatch,
        t: torch.Tensor,
        cond: dict[str, torch.Tensor] | None = None,
        prev: CleanEstimate | None = None,
    ) -> DenoiserOutput:
        """Denoise a noisy batch (see :meth:`CrystalDenoiser.forward`); ``prev``: the
        previous estimate of the clean crystals (only with ``cfg.self_condition``; None = no
        estimate).

        With ``G > 1`` size groups (``cfg.size_groups``; ``cfg.cpu_size_groups`` on a CPU) the
        crystals are split into ``G`` groups of similar size (equal counts, by atom count) and
        each group is padded only to its own largest crystal: the same outputs for about half
        the all-pairs work on MP-20-like size mixes.
        """
        if prev is not None and not self.cfg.self_condition:
            raise ValueError("this denoiser was built without self_condition")
        na = batch.num_atoms
        groups = (self.cfg.cpu_size_groups if batch.lattice.device.type == "cpu"
                  else self.cfg.size_groups)
        coord = lattice = logits = None
        for sel, atoms, m in size_plan(na, groups, self.cfg.pad_atoms):
            if sel is None:  # one group: the whole batch
                return self._forward(batch.atomic_numbers, batch.frac_coords, batch.lattice, na,
                                     t, cond, m, prev)
            sub_cond = None if cond is None else {k: v[sel] for k, v in cond.items()}
            sub_prev = None if prev is None else CleanEstimate(
                prev.frac_coords[atoms], prev.lattice[sel], prev.weight[sel])
            out = self._forward(batch.atomic_numbers[atoms], batch.frac_coords[atoms],
                                batch.lattice[sel], na[sel], t[sel], sub_cond, m, sub_prev)
            if coord is None:
                coord = out.coord.new_empty((batch.frac_coords.shape[0], 3))
                lattice = out.lattice.new_empty((batch.num_crystals, 3, 3))
                logits = out.type_logits.new_empty((coord.shape[0], out.type_logits.shape[1]))
            coord[atoms], lattice[sel], logits[atoms] = out.coord, out.lattice, out.type_logits
        return DenoiserOutput(coord=coord, lattice=lattice, type_logits=logits)

    def _forward(self, z, frac, lat, na, t, cond, m: int, prev=None) -> DenoiserOutput:
        """One padded group: ``z (N,)``, ``frac (N, 3)``, ``lat (B, 3, 3)``, ``na (B,)`` (on
        the device), ``m`` the padded size (a host int, so nothing here waits for the GPU),
        ``prev`` the group's :class:`CleanEstimate` or None."""
        b, n = lat.shape[0], frac.shape[0]
        dt, dev = lat.dtype, lat.device
        bidx = torch.repeat_interleave(torch.arange(b, device=dev), na, output_size=n)
        pos = atom_slots(bidx, na)
        mask = (torch.arange(m, device=dev).unsqueeze(0) < na.unsqueeze(1)).to(dt)
        inv_count = (1.0 / na.to(dt).clamp(min=1)).view(-1, 1, 1)
        with torch.autocast(dev.type, enabled=False):  # geometry in full precision
            f = to_dense(frac, bidx, pos, b, m)
            feats = self._fourier(f.unsqueeze(1) - f.unsqueeze(2))  # (B, M, M, 6K): i -> j
            cellf = lattice_features(lat, na)
            lscale = det3(lat).abs().clamp(min=1e-6).pow(1.0 / 3.0).clamp(min=0.5)
            rbf = None
            if self.cfg.distance_rbf:
                c = self.rbf_centres.to(lat.dtype)
                width = self.cfg.distance_max / max(self.cfg.distance_rbf - 1, 1)
                rbf = torch.exp(-((pair_distances(f, lat).unsqueeze(-1) - c) / width).square())
        g = self.time(t.to(dt)) + self.cell(cellf) + self.cond(cond, b, lat)
        h = to_dense(self.embed(z), bidx, pos, b, m)
        e = self.edge_in(feats)
        if rbf is not None:
            e = e + self.dist_edge(rbf)
        if prev is not None:
            w = prev.weight.to(dt)
            with torch.autocast(dev.type, enabled=False):
                fp = to_dense(prev.frac_coords.to(dt), bidx, pos, b, m)
                sc_feats = self._fourier(fp.unsqueeze(1) - fp.unsqueeze(2))
                sc_cellf = lattice_features(prev.lattice.to(dt), na).clamp(-5.0, 5.0)  # early
                # estimates can be near-singular cells
            e = e + w.view(-1, 1, 1, 1) * self.sc_edge(sc_feats)
            g = g + w.view(-1, 1) * self.sc_cell(sc_cellf)
        for blk in self.blocks:
            h, e = blk(h, e, g, mask, inv_count)
        hf = self.out_norm(h)
        pooled = torch.einsum("bif,bi->bf", hf, mask) * inv_count.view(-1, 1) + g
        hn = hf[bidx, pos]
        coord = self.coord_head(hn).to(dt)
        type_logits = self.type_head(hn).to(dt)
        a = self.lattice_head(pooled).to(dt).view(b, 3, 3)
        with torch.autocast(dev.type, enabled=False):
            lattice = a @ lat / lscale.view(-1, 1, 1)
        return DenoiserOutput(coord=coord, lattice=lattice, type_logits=type_logits)
