"""Periodic radius graph, built for a whole batch at once (no Python loop over crystals)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from matgen.nn._linalg import cofactor_rows, det3


@dataclass
class PeriodicGraph:
    """Edges of a batch of periodic crystals to every periodic image within a cutoff.

    Fields:
        src: ``(E,)`` int64, index of the neighbour atom j.
        dst: ``(E,)`` int64, index of the centre atom i (messages flow ``src -> dst``).
        vec: ``(E, 3)`` Cartesian vector from atom i to the image of atom j, in Å.
        dist: ``(E,)`` length of ``vec`` in Å.
        edge_crystal: ``(E,)`` int64, crystal index of each edge.
    """

    src: torch.Tensor
    dst: torch.Tensor
    vec: torch.Tensor
    dist: torch.Tensor
    edge_crystal: torch.Tensor


def periodic_radius_graph(
    frac_coords: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_images: int = 8,
    max_candidates: int = 1 << 19,
) -> PeriodicGraph:
    """All pairs (i, j + n) with ``0 < |r_j + n L - r_i| < cutoff`` over lattice translations n.

    The image range is computed per pair from the reciprocal lattice: the component of a
    Cartesian vector r along fractional axis k is ``r . b_k`` with ``b_k`` the k-th column of
    ``L^-1``, so ``|df_k + n_k| <= cutoff * |b_k|`` bounds every image that can lie inside the
    sphere. The edge set is therefore complete for any cell shape and identical for every choice
    of lattice basis of the same crystal (which is what makes a denoiser built on it exactly
    invariant under a unimodular change of basis). For degenerate (noisy, nearly flat) cells the
    reach per direction is capped at ``max_images`` cells to bound memory; the graph is then
    incomplete for that cell only; likewise the reach of a crystal is shrunk when its number of
    candidate (pair, image) combinations ``N_b^2 prod_k (2 reach_k + 1)`` would exceed
    ``max_candidates`` (only dense, degenerate cells hit this bound).

    Args:
        frac_coords: ``(N, 3)`` fractional coordinates (any real values; only differences matter).
        lattice: ``(B, 3, 3)`` lattice vectors as rows, Å.
        num_atoms: ``(B,)`` int64 atoms per crystal.
        cutoff: radius in Å.
        max_images: cap on the number of cells searched in each lattice direction.
        max_candidates: cap on candidate pairs-with-image per crystal.

    Returns:
        The :class:`PeriodicGraph`.
    """
    device = frac_coords.device
    b_count = lattice.shape[0]
    n_total = frac_coords.shape[0]
    batch = torch.repeat_interleave(
        torch.arange(b_count, device=device), num_atoms, output_size=n_total
    )
    ptr = torch.cumsum(num_atoms, 0) - num_atoms
    # all ordered pairs (i, j) inside each crystal, ragged -> flat
    na_i = num_atoms[batch]
    num_pairs = int((num_atoms * num_atoms).sum())  # the one host sync for the pair list
    i = torch.repeat_interleave(torch.arange(n_total, device=device), na_i, output_size=num_pairs)
    start = torch.cumsum(na_i, 0) - na_i
    j_local = torch.arange(num_pairs, device=device) - torch.repeat_interleave(
        start, na_i, output_size=num_pairs
    )
    crystal = batch[i]
    j = ptr[crystal] + j_local

    with torch.no_grad():
        # |column k of L^-1| = |row k of the cofactor matrix| / |det L|
        lat = lattice.detach()
        vol = det3(lat).abs().clamp(min=1e-12)
        reach = cutoff * cofactor_rows(lat).norm(dim=-1) / vol.unsqueeze(-1)
        reach = reach.clamp(max=float(max_images))  # (B, 3)
        est = num_atoms.to(reach.dtype) ** 2 * (2 * reach + 1).prod(-1)
        shrink = (max_candidates / est).clamp(max=1.0).pow(1.0 / 3.0)
        reach = reach * shrink.unsqueeze(-1)
        df = (frac_coords[j] - frac_coords[i]).detach()
        r = reach[crystal]
        lo = torch.ceil(-df - r)
        hi = torch.floor(-df + r)
        cnt = (hi - lo + 1).clamp(min=0).long()  # (P, 3)
        tot = cnt.prod(-1)
        num_cand = int(tot.sum())  # host sync: number of (pair, image) candidates
        pe = torch.repeat_interleave(
            torch.arange(num_pairs, device=device), tot, output_size=num_cand
        )
        k = torch.arange(num_cand, device=device) - torch.repeat_interleave(
            torch.cumsum(tot, 0) - tot, tot, output_size=num_cand
        )
        c = cnt[pe]
        n0 = k % c[:, 0]
        k = torch.div(k, c[:, 0], rounding_mode="floor")
        n1 = k % c[:, 1]
        n2 = torch.div(k, c[:, 1], rounding_mode="floor")
        shift = lo[pe] + torch.stack([n0, n1, n2], -1).to(lo.dtype)

    src, dst, ec = j[pe], i[pe], crystal[pe]
    dfe = frac_coords[src] - frac_coords[dst] + shift.to(frac_coords.dtype)
    vec = torch.einsum("ei,eij->ej", dfe, lattice[ec])
    dist = vec.norm(dim=-1)
    keep = torch.nonzero((dist < cutoff) & (dist > 1e-6)).squeeze(1)  # one host sync
    return PeriodicGraph(
        src=src[keep], dst=dst[keep], vec=vec[keep], dist=dist[keep], edge_crystal=ec[keep]
    )
