"""CHGNet behind the :class:`~matgen.surrogates._mlip.MLIP` interface: pretrained weights
from its wheel, neighbour graphs built in-process or in a pool of workers, and a vectorised
batched energy/force/stress forward."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from matgen.surrogates._mlip import (
    GPA_TO_EV_A3,
    MLIPOutput,
    _one_line,
    _output,
    fill_outputs,
    nan_outputs,
    resolve_device,
)
from matgen.surrogates._neighbours import within_skin

if TYPE_CHECKING:  # pragma: no cover
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Structure


class CHGNetMLIP:
    """CHGNet (pretrained weights from its wheel) with a batched energy/force/stress forward.

    CHGNet's energies are trained on MPtrj's MP2020-corrected energies; scoring moves them onto
    the MP reference hull's scale (MP's legacy corrections: minus MP2020's, plus the legacy
    ones, :func:`~matgen.surrogates._mlip.to_hull_scale`) before comparing with the hull.

    Args:
        model: a loaded ``chgnet.model.CHGNet``; default ``CHGNet.load()`` (weights 0.3.0).
        device: ``auto``, ``cpu`` or ``cuda``.
        graph_skin: Å; during relaxation a neighbour graph is rebuilt only after some edge
            length may have changed by this much (0: rebuild every step).
        vectorized: assemble the batch with vectorised tensor operations and take forces and
            stresses from one first-order backward pass (same numbers as CHGNet's own batched
            forward, checked in the tests; False: call ``CHGNet.forward``).
        graph_workers: processes that build neighbour graphs (CPU work that dominates once the
            forward runs on a GPU); ``auto``: up to 8 on CUDA, 0 (in-process) on CPU.
    """

    name = "chgnet"
    #: CHGNet's energies already carry MP2020 corrections (it was trained on corrected ones).
    energy_scale = "mp2020"

    def __init__(
        self,
        model=None,
        device: str | torch.device | None = "auto",
        graph_skin: float = 0.05,
        vectorized: bool = True,
        graph_workers: int | str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        if model is None:
            model = _pretrained_chgnet(str(self.device))
        self.model = model.to(self.device).eval()
        self.version = str(getattr(model, "version", None) or model.model_args.get("version"))
        conv = self.model.graph_converter
        self.cutoff = float(conv.atom_graph_cutoff)
        self.graph_skin = float(graph_skin)
        self.vectorized = bool(vectorized)
        if graph_workers == "auto":
            graph_workers = min(8, (os.cpu_count() or 1) // 2) if self.device.type == "cuda" else 0
        self.graph_workers = int(graph_workers)
        self._pool = None
        self._cache: dict[Hashable, tuple] = {}

    def _graph(self, structure: Structure):
        return _checked_graph(self.model.graph_converter, structure)

    def _build_graphs(self, structures: list[Structure]) -> list:
        """CrystalGraphs (or one-line error strings), in a process pool when configured."""
        if self.graph_workers > 0 and len(structures) >= 2 * self.graph_workers:
            if self._pool is None:
                from matgen._pool import process_pool

                conv = self.model.graph_converter
                self._pool = process_pool(  # workers import torch + CHGNet: fresh processes
                    self.graph_workers,
                    initializer=_init_graph_worker,
                    initargs=(conv.atom_graph_cutoff, conv.bond_graph_cutoff, conv.algorithm),
                    fresh=True,
                )
            args = [
                (s.atomic_numbers, np.array(s.lattice.matrix), np.array(s.frac_coords))
                for s in structures
            ]
            chunk = max(1, len(args) // (4 * self.graph_workers))
            return list(self._pool.map(_graph_worker, args, chunksize=chunk))
        out = []
        for s in structures:
            try:
                out.append(self._graph(s))
            except Exception as exc:  # noqa: BLE001 - any graph failure is per structure
                out.append(_one_line(exc))
        return out

    def close(self) -> None:
        """Stop the graph-building worker processes (if any)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def predict(
        self,
        structures: list[Structure],
        compute_stress: bool = True,
        keys: list[Hashable | None] | None = None,
    ) -> MLIPOutput:
        """Batched CHGNet forward.

        Args:
            structures: B pymatgen structures.
            compute_stress: also compute stresses (needed for cell relaxation).
            keys: optional per-structure cache keys (used by the relaxer). A structure whose
                key was seen before and whose atoms moved less than ``graph_skin`` (Å, bound on
                the change of any edge length) reuses the cached neighbour topology with new
                coordinates: edges that left the cutoff contribute exactly 0 (CHGNet's envelope
                is 0 beyond it); edges that entered are missed but sit within ``graph_skin`` of
                the cutoff where the envelope is ~0. ``fresh`` in the output says which graphs
                were rebuilt. Call :meth:`forget` when done with a key.

        Returns:
            :class:`MLIPOutput`; a structure whose graph cannot be built, or whose outputs are
            not finite, has NaN outputs and a reason in ``errors``.
        """
        b = len(structures)
        n_at = [len(s) for s in structures]
        errors: list[str | None] = [None] * b
        fresh = [True] * b
        built: list = [None] * b
        todo = []
        for i, s in enumerate(structures):
            key = keys[i] if keys is not None else None
            try:
                g = self._reuse(key, s) if key is not None else None
            except Exception:  # noqa: BLE001 - fall back to a fresh graph
                g = None
            if g is None:
                todo.append(i)
            else:
                fresh[i] = False
                built[i] = g
        for i, g in zip(todo, self._build_graphs([structures[i] for i in todo]), strict=True):
            if isinstance(g, str):
                errors[i] = f"graph construction failed: {g}"
                continue
            g = g.to(self.device)
            built[i] = g
            key = keys[i] if keys is not None else None
            if key is not None:
                s = structures[i]
                self._cache[key] = (g, np.array(s.frac_coords), np.array(s.lattice.matrix))
        ok = [i for i in range(b) if built[i] is not None]
        graphs = [built[i] for i in ok]
        energy, forces, stress = nan_outputs(n_at)
        if graphs:
            with warnings.catch_warnings():  # CHGNet's own tensor-conversion warnings
                warnings.simplefilter("ignore", UserWarning)
                if self.vectorized:
                    e, f_all, s_all = self._forward_vectorized(graphs, compute_stress)
                else:
                    e, f_all, s_all = self._forward_chgnet(graphs, compute_stress)
            fill_outputs(  # one device -> host copy per output
                (energy, forces, stress), ok, n_at, e.detach().double().cpu(),
                f_all.detach().double().cpu(),
                s_all.detach().double().cpu() if s_all is not None else None,
            )
        return _output(energy, forces, stress, errors, fresh, compute_stress)

    def _forward_chgnet(self, graphs, compute_stress: bool):
        """CHGNet's own batched forward: ``(B,)`` eV/atom, ``(N, 3)`` eV/Å, ``(B, 3, 3)`` eV/Å^3."""
        pred = self.model(graphs, task="efs" if compute_stress else "ef")
        s_all = torch.stack(pred["s"]) * GPA_TO_EV_A3 if compute_stress else None
        return pred["e"], torch.cat(pred["f"]), s_all

    def _forward_vectorized(self, graphs, compute_stress: bool):
        """The same numbers as :meth:`_forward_chgnet`, with the batch assembled in a few
        vectorised operations instead of a Python loop over graphs, and forces and stresses
        from one first-order backward pass (CHGNet's own forward builds a double-backward graph
        for training). Uses CHGNet's layers (``_compute``, basis expansions) unchanged."""
        from chgnet.model.model import BatchedGraph

        m = self.model
        dev = self.device
        n_atoms = torch.tensor([len(g.atomic_number) for g in graphs], device=dev)
        n_dir = torch.tensor([len(g.atom_graph) for g in graphs], device=dev)
        n_und = torch.tensor([len(g.undirected2directed) for g in graphs], device=dev)
        n_ang = torch.tensor([len(g.bond_graph) for g in graphs], device=dev)
        b = len(graphs)
        ar = torch.arange(b, device=dev)

        def offsets(n):
            return torch.cumsum(n, 0) - n

        atom_off, dir_off, und_off = offsets(n_atoms), offsets(n_dir), offsets(n_und)
        atom_owner = torch.repeat_interleave(ar, n_atoms)
        edge_owner = torch.repeat_interleave(ar, n_dir)
        und_owner = torch.repeat_interleave(ar, n_und)
        ang_owner = torch.repeat_interleave(ar, n_ang)
        z = torch.cat([g.atomic_number for g in graphs])
        frac = torch.cat([g.atom_frac_coord.detach() for g in graphs]).requires_grad_(True)
        lat = torch.stack([g.lattice.detach() for g in graphs])
        strain = torch.zeros_like(lat, requires_grad=compute_stress)
        lat_s = lat @ (torch.eye(3, dtype=lat.dtype, device=dev) + strain)
        pos = torch.einsum("ni,nij->nj", frac, lat_s[atom_owner])
        ag = torch.cat([g.atom_graph for g in graphs]).long() + atom_off[edge_owner, None]
        image = torch.cat([g.neighbor_image for g in graphs])
        nbr = pos[ag[:, 1]] + torch.einsum("ei,eij->ej", image, lat_s[edge_owner])
        vec = pos[ag[:, 0]] - nbr
        length = torch.norm(vec, dim=1)
        vec = vec / length[:, None]
        u2d = torch.cat([g.undirected2directed for g in graphs]).long() + dir_off[und_owner]
        und_len = length[u2d]
        basis = m.bond_basis_expansion
        bond_bases_ag = basis.rbf_expansion_ag(und_len)
        bond_bases_bg = basis.rbf_expansion_bg(und_len)
        d2u = torch.cat([g.directed2undirected for g in graphs]).long() + und_off[edge_owner]
        if int(n_ang.sum()):
            bg = torch.cat([g.bond_graph for g in graphs]).long()
            angle_bases = m.angle_basis_expansion(
                vec[bg[:, 2] + dir_off[ang_owner]], vec[bg[:, 4] + dir_off[ang_owner]]
            )
            batched_bg = torch.stack(
                [
                    bg[:, 0] + atom_off[ang_owner],
                    bg[:, 1] + und_off[ang_owner],
                    bg[:, 3] + und_off[ang_owner],
                ],
                dim=1,
            )
        else:
            angle_bases = torch.tensor([], device=dev)
            batched_bg = torch.tensor([], device=dev)
        volumes = torch.linalg.det(lat_s).abs()
        g_all = BatchedGraph(
            atomic_numbers=z,
            bond_bases_ag=bond_bases_ag,
            bond_bases_bg=bond_bases_bg,
            angle_bases=angle_bases,
            batched_atom_graph=ag,
            batched_bond_graph=batched_bg,
            atom_owners=atom_owner.to(torch.int32),
            directed2undirected=d2u,
            atom_positions=[pos],
            strains=[strain],
            volumes=volumes.detach(),
        )
        pred = m._compute(g_all, compute_force=False, compute_stress=False)
        e = pred["e"]
        if m.composition_model is not None:
            comp = torch.zeros(b, m.composition_model.max_num_elements, device=dev)
            comp.index_put_(
                (atom_owner, z.long() - 1), torch.ones_like(z, dtype=comp.dtype), accumulate=True
            )
            if m.composition_model.is_intensive:
                comp = comp / n_atoms[:, None]
            e = e + m.composition_model._get_energy(comp)
        e_total = e * n_atoms if m.is_intensive else e
        inputs = [pos, strain] if compute_stress else [pos]
        grads = torch.autograd.grad(e_total.sum(), inputs)
        forces = -grads[0]
        stress = grads[1] / volumes[:, None, None] if compute_stress else None
        e_pa = e if m.is_intensive else e / n_atoms
        return e_pa, forces, stress

    def _reuse(self, key: Hashable, s: Structure):
        """The cached graph of ``key`` with ``s``'s coordinates, or None when it moved too far."""
        from chgnet.graph import CrystalGraph

        hit = self._cache.get(key)
        if hit is None or self.graph_skin <= 0:
            return None
        g, frac0, lat0 = hit
        frac, lat = np.array(s.frac_coords), np.array(s.lattice.matrix)
        if not within_skin(frac0, lat0, frac, lat, self.cutoff, self.graph_skin):
            return None
        return CrystalGraph(
            atomic_number=g.atomic_number,
            atom_frac_coord=torch.tensor(
                frac, dtype=g.atom_frac_coord.dtype, device=self.device, requires_grad=True
            ),
            atom_graph=g.atom_graph,
            atom_graph_cutoff=g.atom_graph_cutoff,
            neighbor_image=g.neighbor_image,
            directed2undirected=g.directed2undirected,
            undirected2directed=g.undirected2directed,
            bond_graph=g.bond_graph,
            bond_graph_cutoff=g.bond_graph_cutoff,
            lattice=torch.tensor(
                lat, dtype=g.lattice.dtype, device=self.device, requires_grad=True
            ),
        )

    def forget(self, keys: Iterable[Hashable]) -> None:
        """Drop cached graphs (see ``keys`` of :meth:`predict`)."""
        for k in keys:
            self._cache.pop(k, None)

    def embed(self, structures: list[Structure]) -> torch.Tensor:
        """``(B, 64)`` CHGNet crystal features (mean-pooled atom features)."""
        graphs = [self._graph(s).to(self.device) for s in structures]
        with torch.no_grad():
            pred = self.model(graphs, task="e", return_crystal_feas=True)
        return pred["crystal_fea"].detach().cpu()

    def ase_calculator(self) -> Calculator:
        from chgnet.model.dynamics import CHGNetCalculator

        return CHGNetCalculator(model=self.model, use_device=str(self.device))


@functools.lru_cache(maxsize=2)
def _pretrained_chgnet(device: str):
    """CHGNet's bundled weights, loaded once per process and device (inference only)."""
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(use_device="cpu", verbose=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def _checked_graph(conv, structure: Structure):
    n = len(structure)
    graph = conv(structure, graph_id=None)
    owners = set(graph.atom_graph[:, 0].tolist()) if graph.atom_graph.numel() else set()
    if len(owners) < n:
        raise ValueError(
            f"{n - len(owners)} isolated atom(s): no neighbour within {conv.atom_graph_cutoff:g} Å"
        )
    return graph


_WORKER_CONVERTER = None


def _init_graph_worker(atom_cutoff: float, bond_cutoff: float, algorithm: str) -> None:
    global _WORKER_CONVERTER
    torch.set_num_threads(1)
    from chgnet.graph import CrystalGraphConverter

    _WORKER_CONVERTER = CrystalGraphConverter(
        atom_graph_cutoff=atom_cutoff,
        bond_graph_cutoff=bond_cutoff,
        algorithm=algorithm,
        on_isolated_atoms="error",
        verbose=False,
    )


def _graph_worker(args):
    from pymatgen.core import Lattice, Structure

    z, lat, frac = args
    try:
        return _checked_graph(_WORKER_CONVERTER, Structure(Lattice(lat), list(z), frac))
    except Exception as exc:  # noqa: BLE001
        return _one_line(exc)
