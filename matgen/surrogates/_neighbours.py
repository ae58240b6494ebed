"""Periodic neighbour lists: matscipy's (CPU) and a batched torch one on any device, and the
skin test that lets a relaxation reuse a list while atoms move little."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def matscipy_neighbour_list(lattice: np.ndarray, cart: np.ndarray, cutoff: float):
    """Periodic directed edges ``i -> j`` within ``cutoff`` (no self-edge at zero distance):
    ``(src, dst, image)`` with ``r_j + image @ lattice - r_i`` the edge vector."""
    from matscipy.neighbours import neighbour_list

    src, dst, image = neighbour_list(
        "ijS", pbc=np.array([True] * 3), cell=lattice, positions=cart, cutoff=cutoff
    )
    return src.astype(np.int64), dst.astype(np.int64), image.astype(np.float64)


def torch_neighbour_list(lattice: torch.Tensor, cart: torch.Tensor, cutoff: float):
    """:func:`matscipy_neighbour_list` in torch, on the tensors' device (one structure; see
    :func:`batched_neighbour_list`).

    Returns:
        ``(src, dst, image)`` as int64 / int64 / float64 tensors on ``cart``'s device, edges in
        no particular order (compare sorted), the same edge set as matscipy's.
    """
    owner = torch.zeros(cart.shape[0], dtype=torch.int64, device=cart.device)
    return batched_neighbour_list(lattice[None], cart, owner, cutoff)


#: Most (atom pair x lattice image) candidates one chunk of :func:`batched_neighbour_list`
#: holds in memory at once (~100 bytes each).
NEIGHBOUR_CHUNK = 1 << 22


def batched_neighbour_list(
    lattice: torch.Tensor, cart: torch.Tensor, owner: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Periodic neighbour lists of a whole batch of crystals in torch, on the tensors' device.

    Every ordered pair of atoms of the same crystal is tried against every lattice image of
    that crystal that can lie within ``cutoff`` (``ceil(cutoff / h)`` images each side, ``h``
    the spacing of its lattice planes, after wrapping the atoms into the cell): cost
    ~ sum over crystals of n^2 x images, fine for the small cells of generated crystals;
    vectorised over the batch in chunks of :data:`NEIGHBOUR_CHUNK` candidates.

    Args:
        lattice: ``(B, 3, 3)`` Å, lattice vectors as rows.
        cart: ``(N, 3)`` Å, Cartesian positions of the atoms of all crystals.
        owner: ``(N,)`` int64, the crystal of each atom (sorted: crystal 0's atoms first).
        cutoff: Å.

    Returns:
        ``(src, dst, image)``: ``(E,)`` int64 global atom indices and ``(E, 3)`` float64
        integer cell shifts; ``cart[dst] + image @ lattice[owner[src]] - cart[src]`` is the
        edge vector, shorter than ``cutoff``; no self-edge at zero distance; the same edge set
        as matscipy's, in no particular order.
    """
    lat = lattice.to(torch.float64)
    pos = cart.to(torch.float64)
    dev = pos.device
    b, n = lat.shape[0], pos.shape[0]
    frac = torch.einsum("ni,nij->nj", pos, torch.linalg.inv(lat)[owner])
    shift = torch.floor(frac)
    wrapped = torch.einsum("ni,nij->nj", frac - shift, lat[owner])
    vol = torch.linalg.det(lat).abs()
    cross = torch.stack(
        [
            torch.linalg.cross(lat[:, 1], lat[:, 2]),
            torch.linalg.cross(lat[:, 2], lat[:, 0]),
            torch.linalg.cross(lat[:, 0], lat[:, 1]),
        ],
        dim=1,
    )  # (B, 3, 3)
    reps = torch.ceil(cutoff * cross.norm(dim=2) / vol[:, None]).long()  # (B, 3)
    width = 2 * reps + 1
    n_img = width.prod(1)  # (B,) images each crystal needs
    # every ordered pair (i, j) of atoms of the same crystal
    counts = torch.bincount(owner, minlength=b)
    first = torch.cumsum(counts, 0) - counts
    per_atom = counts[owner]
    i_all = torch.repeat_interleave(torch.arange(n, device=dev), per_atom)
    pair_start = torch.cumsum(per_atom, 0) - per_atom
    j_all = first[owner[i_all]] + torch.arange(i_all.shape[0], device=dev) - pair_start[i_all]
    k_pair = n_img[owner[i_all]]  # candidates of each pair
    ends = torch.cumsum(k_pair, 0)
    total = int(ends[-1]) if ends.numel() else 0
    marks = torch.arange(1, max(total - 1, 0) // NEIGHBOUR_CHUNK + 1, device=dev)
    cuts = torch.searchsorted(ends, marks * NEIGHBOUR_CHUNK, right=True).tolist()
    bounds = [0, *cuts, int(i_all.shape[0])]
    src, dst, img = [], [], []
    for p0, p1 in itertools.pairwise(bounds):
        if p1 <= p0:
            continue
        kk = k_pair[p0:p1]
        pair = torch.repeat_interleave(torch.arange(p0, p1, device=dev), kk)
        k = torch.arange(pair.shape[0], device=dev) - (torch.cumsum(kk, 0) - kk)[pair - p0]
        i, j = i_all[pair], j_all[pair]
        o = owner[i]
        r, w = reps[o], width[o]
        image = torch.stack(
            [
                k // (w[:, 1] * w[:, 2]) - r[:, 0],
                (k // w[:, 2]) % w[:, 1] - r[:, 1],
                k % w[:, 2] - r[:, 2],
            ],
            dim=1,
        ).to(torch.float64)
        # w_j + S L - w_i
        vec = wrapped[j] - wrapped[i] + torch.einsum("mi,mij->mj", image, lat[o])
        keep = ((vec * vec).sum(1) < cutoff * cutoff) & ~((i == j) & (image == 0).all(1))
        m = torch.nonzero(keep, as_tuple=True)[0]
        src.append(i[m])
        dst.append(j[m])
        # back to the unwrapped positions: image' = S + o_i - o_j
        img.append(image[m] + shift[i[m]] - shift[j[m]])
    if not src:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return empty, empty, torch.zeros(0, 3, dtype=torch.float64, device=dev)
    return torch.cat(src), torch.cat(dst), torch.cat(img)


def within_skin(frac0, lat0, frac, lat, cutoff: float, skin: float) -> bool:
    """True when no edge length within ``cutoff`` can have changed by ``skin`` (Å) or more
    between the cached geometry ``(frac0, lat0)`` and ``(frac, lat)``."""
    if frac.shape != frac0.shape:
        return False
    strain = np.linalg.solve(lat0, lat) - np.eye(3)
    moved = 2 * np.linalg.norm((frac - frac0) @ lat, axis=1).max()
    moved += cutoff * np.linalg.norm(strain, 2)
    return bool(moved < skin)
