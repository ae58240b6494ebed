"""Batched relaxation with the whole state on the MLIP's device (the GPU path of :func:`relax`).

:func:`relax` runs here for an MLIP that takes a batch as tensors (``forward_graph``, e.g.
:class:`~matgen.surrogates.SevenNetMLIP`): positions, cells, FIRE state and convergence masks
are tensors on the model's device, the neighbour lists of the whole batch are built there every
step (:func:`~matgen.surrogates._neighbours.batched_neighbour_list`, exact cutoff, as ASE does), and
no pymatgen object or per-structure Python is touched between steps: a step is one neighbour
list, one MLIP forward and one vectorised FIRE update for the batch, plus one small host copy
of the per-structure flags. The optimizer is the same as the structure path's (ASE ``FIRE`` +
``FrechetCellFilter`` degrees of freedom, :func:`~matgen.surrogates._relax.fire_update`), with
the same in-flight batching: a finished structure leaves the batch and the next one takes its
place. Results (pymatgen structures) are built once, when a structure finishes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from matgen.surrogates._mlip import _one_line
from matgen.surrogates._neighbours import batched_neighbour_list
from matgen.surrogates._relax import (
    RelaxConfig,
    RelaxResult,
    _failed,
    explosion_reason,
    fire_update,
    frechet_cell_forces,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from pymatgen.core import Structure


class _Batch:
    """The active structures: per-atom rows ``(N, ...)`` and per-structure rows ``(B, ...)``.

    Atoms of structure 0 come first (``owner`` sorted); positions are kept in the reference
    (input) cell as in ASE's ``FrechetCellFilter``: ``r = r_ref F^T``, ``cell = cell0 F^T``,
    ``F = expm(x / ecf)``.
    """

    def __init__(self, device: torch.device):
        f64 = {"dtype": torch.float64, "device": device}
        i64 = {"dtype": torch.int64, "device": device}
        self.device = device
        # per atom
        self.z = torch.zeros(0, **i64)
        self.r_ref = torch.zeros(0, 3, **f64)
        self.v_r = torch.zeros(0, 3, **f64)
        self.owner = torch.zeros(0, **i64)
        # per structure
        self.index = torch.zeros(0, **i64)  # position in the input list
        self.cell0 = torch.zeros(0, 3, 3, **f64)
        self.x = torch.zeros(0, 3, 3, **f64)
        self.v_x = torch.zeros(0, 3, 3, **f64)
        self.dt = torch.zeros(0, **f64)
        self.alpha = torch.zeros(0, **f64)
        self.n_pos = torch.zeros(0, **i64)
        self.steps = torch.zeros(0, **i64)
        self.n = torch.zeros(0, **i64)
        self.vol0 = torch.zeros(0, **f64)

    @property
    def size(self) -> int:
        return int(self.index.shape[0])

    @property
    def atoms(self) -> int:
        return int(self.z.shape[0])

    def append(self, index: list[int], structures: list[Structure], cfg: RelaxConfig) -> None:
        dev = self.device
        n = [len(s) for s in structures]
        b0 = self.size
        z = torch.as_tensor(
            np.concatenate([s.atomic_numbers for s in structures]), dtype=torch.int64, device=dev
        )
        cart = torch.as_tensor(
            np.concatenate([s.cart_coords for s in structures]), dtype=torch.float64, device=dev
        )
        cell0 = torch.as_tensor(
            np.stack([s.lattice.matrix for s in structures]), dtype=torch.float64, device=dev
        )
        nn = torch.as_tensor(n, dtype=torch.int64, device=dev)
        k = len(structures)
        self.z = torch.cat([self.z, z])
        self.r_ref = torch.cat([self.r_ref, cart])
        self.v_r = torch.cat([self.v_r, torch.zeros_like(cart)])
        self.owner = torch.cat(
            [self.owner, b0 + torch.repeat_interleave(torch.arange(k, device=dev), nn)]
        )
        self.index = torch.cat([self.index, torch.as_tensor(index, device=dev)])
        self.cell0 = torch.cat([self.cell0, cell0])
        self.x = torch.cat([self.x, torch.zeros_like(cell0)])
        self.v_x = torch.cat([self.v_x, torch.zeros_like(cell0)])
        self.dt = torch.cat([self.dt, torch.full((k,), cfg.dt, dtype=torch.float64, device=dev)])
        self.alpha = torch.cat(
            [self.alpha, torch.full((k,), cfg.alpha_start, dtype=torch.float64, device=dev)]
        )
        self.n_pos = torch.cat([self.n_pos, torch.zeros_like(nn)])
        self.steps = torch.cat([self.steps, torch.zeros_like(nn)])
        self.n = torch.cat([self.n, nn])
        self.vol0 = torch.cat([self.vol0, torch.linalg.det(cell0).abs()])

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the structures where ``mask`` (B,) is False."""
        atom = mask[self.owner]
        new_id = torch.cumsum(mask.long(), 0) - 1
        self.owner = new_id[self.owner[atom]]
        for name in ("z", "r_ref", "v_r"):
            setattr(self, name, getattr(self, name)[atom])
        for name in ("index", "cell0", "x", "v_x", "dt", "alpha", "n_pos", "steps", "n", "vol0"):
            setattr(self, name, getattr(self, name)[mask])


def relax_tensor(
    structures: list[Structure],
    mlip,
    cfg: RelaxConfig,
    ids: list[str],
    progress: Callable[[int], None] | None = None,
) -> list[RelaxResult]:
    """:func:`~matgen.surrogates.relax` for an MLIP with ``forward_graph`` (see the module).

    Same arguments and results as :func:`~matgen.surrogates.relax`, whose structure path it
    matches (same FIRE rule, cell filter, convergence and failure rules, tested); ``ids`` is
    already a list of strings.
    """
    dev = mlip.device
    results: list[RelaxResult | None] = [None] * len(structures)
    waiting = deque(range(len(structures)))
    st = _Batch(dev)

    def finish(i: int, res: RelaxResult) -> None:
        results[i] = res
        if progress is not None:
            progress(1)

    while waiting or st.size:
        _fill(
            st, waiting, structures, mlip, cfg, lambda j, e: finish(j, _failed(ids[j], e, None, 0))
        )
        if not st.size:
            continue
        ev = _evaluate(st, mlip, cfg)
        done, reasons = _done(ev, mlip.cutoff, cfg)
        if done.any():
            for i, res in _finished(st, ev, done, reasons, structures, ids, cfg):
                finish(i, res)
        if done.all():
            st.keep(torch.zeros(st.size, dtype=torch.bool, device=dev))
            continue
        _fire_step(st, ev, cfg)  # every structure (finished ones are dropped right after)
        if done.any():
            st.keep(torch.as_tensor(~done, device=dev))
    return [r for r in results if r is not None]


def _fill(
    st: _Batch,
    waiting: deque[int],
    structures: list[Structure],
    mlip,
    cfg: RelaxConfig,
    reject: Callable[[int, str], None],
) -> None:
    """Move waiting structures into the batch while it has room (in-flight batching);
    ``reject(index, reason)`` for those the MLIP cannot take."""
    new: list[int] = []
    n_atoms = st.atoms
    while waiting and st.size + len(new) < cfg.batch_size:
        j = waiting[0]
        nj = len(structures[j])
        if (st.size or new) and n_atoms + nj > cfg.max_atoms_per_batch:
            break
        waiting.popleft()
        err = _admission_error(structures[j], mlip)
        if err is not None:
            reject(j, err)
            continue
        new.append(j)
        n_atoms += nj
    if new:
        st.append(new, [structures[j] for j in new], cfg)


@dataclass
class _Eval:
    """One evaluation of the batch: the cells, the gradients on positions and cell, and the
    per-structure numbers copied to the host (energy per atom, max force, volume ratio,
    atoms without neighbours, finite flag, steps taken)."""

    cell: torch.Tensor
    g_r: torch.Tensor
    g_x: torch.Tensor
    host: np.ndarray


def _evaluate(st: _Batch, mlip, cfg: RelaxConfig) -> _Eval:
    """Neighbour lists, one MLIP forward and the FIRE gradients of the whole batch."""
    dev = st.x.device
    b, owner = st.size, st.owner
    ecf = st.n.to(torch.float64)[:, None, None]  # ASE's exp_cell_factor: atoms
    deform = torch.linalg.matrix_exp(st.x / ecf)
    cell = st.cell0 @ deform.transpose(1, 2)
    pos = torch.einsum("ni,nji->nj", st.r_ref, deform[owner])
    edges = batched_neighbour_list(cell, pos, owner, mlip.cutoff)
    bonded = torch.zeros(st.atoms, dtype=torch.bool, device=dev)
    bonded[edges[0]] = True
    lonely = torch.zeros(b, dtype=torch.int64, device=dev).index_add_(
        0, owner, (~bonded).long())  # fmt: skip
    energy, forces, stress = mlip.forward_graph(st.z, pos, cell, owner, edges,
                                                compute_stress=cfg.relax_cell)  # fmt: skip
    e_pa = energy / st.n
    g_r = torch.einsum("ni,nij->nj", forces, deform[owner])
    vol = torch.linalg.det(cell).abs()
    if cfg.relax_cell:
        g_x = frechet_cell_forces(-vol[:, None, None] * stress, st.x / ecf, deform) / ecf
    else:
        g_x = torch.zeros_like(cell)
    fmax = torch.zeros(b, dtype=torch.float64, device=dev).scatter_reduce(
        0, owner, g_r.norm(dim=1), "amax")  # fmt: skip
    fmax = torch.maximum(fmax, g_x.norm(dim=2).amax(1))
    bad_f = torch.zeros(b, dtype=torch.int64, device=dev).index_add_(
        0, owner, (~torch.isfinite(forces).all(1)).long())  # fmt: skip
    finite = torch.isfinite(e_pa) & (bad_f == 0) & torch.isfinite(fmax)
    if cfg.relax_cell:
        finite &= torch.isfinite(stress).flatten(1).all(1)
    ratio = vol / st.vol0
    # one host copy of the per-structure flags and numbers of this step
    host = torch.stack([
        e_pa, fmax, ratio, lonely.double(), finite.double(), st.steps.double(),
    ]).cpu().numpy()  # fmt: skip
    return _Eval(cell, g_r, g_x, host)


def _done(ev: _Eval, cutoff: float, cfg: RelaxConfig) -> tuple[np.ndarray, dict[int, str]]:
    """Which structures of the batch finish now, and why those that failed did."""
    e_h, fmax_h, ratio_h, lonely_h, finite_h, steps_h = ev.host
    done = np.zeros(len(e_h), dtype=bool)
    reasons: dict[int, str] = {}
    for k in range(len(e_h)):
        err = _step_error(int(lonely_h[k]), bool(finite_h[k]), float(e_h[k]),
                          float(ratio_h[k]), cutoff, cfg)  # fmt: skip
        if err is not None:
            reasons[k] = err
            done[k] = True
        elif fmax_h[k] < cfg.fmax or steps_h[k] >= cfg.max_steps:
            done[k] = True
    return done, reasons


def _finished(
    st: _Batch,
    ev: _Eval,
    done: np.ndarray,
    reasons: dict[int, str],
    structures: list[Structure],
    ids: list[str],
    cfg: RelaxConfig,
) -> list[tuple[int, RelaxResult]]:
    """``(input index, result)`` of the structures that finish now (pymatgen built here)."""
    from pymatgen.core import Lattice, Structure

    e_h, fmax_h, _, _, _, steps_h = ev.host
    fin = torch.as_tensor(done, device=st.x.device)
    atom = fin[st.owner]
    frac = torch.einsum("ni,nij->nj", st.r_ref[atom],
                        torch.linalg.inv(st.cell0)[st.owner[atom]])  # fmt: skip
    frac_h = np.split(frac.cpu().numpy(), np.cumsum(st.n[fin].cpu().numpy())[:-1])
    cell_h = ev.cell[fin].cpu().numpy()
    index_h = st.index[fin].cpu().numpy()
    out = []
    for m, k in enumerate(np.flatnonzero(done)):
        i = int(index_h[m])
        s = Structure(Lattice(cell_h[m]), structures[i].species, frac_h[m])
        steps = int(steps_h[k])
        if k in reasons:
            out.append((i, _failed(ids[i], reasons[k], s if steps else None, steps)))
        else:
            out.append((i, RelaxResult(id=ids[i], energy_per_atom=float(e_h[k]),
                                       converged=bool(fmax_h[k] < cfg.fmax), steps=steps,
                                       max_force=float(fmax_h[k]), structure=s)))  # fmt: skip
    return out


def _fire_step(st: _Batch, ev: _Eval, cfg: RelaxConfig) -> None:
    """One FIRE step of positions and cells for every structure of the batch."""
    b, dev = st.size, st.x.device
    rows_owner = torch.cat([st.owner, torch.arange(b, device=dev).repeat_interleave(3)])
    f_rows = torch.cat([ev.g_r, ev.g_x.reshape(-1, 3)])
    v_rows = torch.cat([st.v_r, st.v_x.reshape(-1, 3)])
    dr, v, st.dt, st.alpha, st.n_pos = fire_update(
        f_rows, v_rows, st.dt, st.alpha, st.n_pos, st.steps == 0, rows_owner, cfg)  # fmt: skip
    n = st.atoms
    st.r_ref = st.r_ref + dr[:n]
    st.x = st.x + dr[n:].reshape(b, 3, 3)
    st.v_r, st.v_x = v[:n], v[n:].reshape(b, 3, 3)
    st.steps = st.steps + 1


def _admission_error(s: Structure, mlip) -> str | None:
    """A reason ``s`` cannot be relaxed at all (checked once, before it joins the batch)."""
    try:
        if len(s) == 0:
            return "bad structure: no atoms"
        lat = np.array(s.lattice.matrix)
        if not np.isfinite(lat).all() or abs(np.linalg.det(lat)) < 1e-6:
            return "bad structure: degenerate lattice"
        if not np.isfinite(np.array(s.cart_coords)).all():
            return "bad structure: non-finite coordinates"
        z = torch.as_tensor(np.array(s.atomic_numbers), dtype=torch.int64)
        unknown = sorted(
            {
                el.symbol
                for el, u in zip(s.species, mlip.unknown_species(z).tolist(), strict=True)
                if u
            }
        )
        if unknown:
            return (
                f"graph construction failed: ValueError: {mlip.name} has no type for "
                f"{', '.join(unknown)}"
            )
    except Exception as exc:  # noqa: BLE001 - any bad input is per structure
        return f"bad structure: {_one_line(exc)}"
    return None


def _step_error(
    lonely: int, finite: bool, e_pa: float, ratio: float, cutoff: float, cfg: RelaxConfig
) -> str | None:
    """The structure path's failure rules (:func:`~matgen.surrogates._relax._explosion`)."""
    if lonely:
        return (
            f"graph construction failed: ValueError: {lonely} isolated atom(s): no "
            f"neighbour within {cutoff:g} Å"
        )
    if not finite:
        return "non-finite energy, forces or stress"
    return explosion_reason(e_pa, ratio, cfg)
