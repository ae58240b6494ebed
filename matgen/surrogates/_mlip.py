"""Machine-learned interatomic potentials (MLIPs) behind one small interface.

CHGNet and SevenNet (SevenNet-0 by default); both ship their weights inside their wheels, so
they load offline, and both run batched (one forward for many structures) under the relaxer.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import math
import os
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Structure

#: The MLIP of ``matgen score``, campaigns and :func:`score_structures` when none is named;
#: chosen by the WBM discovery benchmark (README, "Scoring: which MLIP").
DEFAULT_MLIP = "sevennet"

#: 1 GPa in eV/Å^3.
GPA_TO_EV_A3 = 1.0 / 160.21766208


@dataclass
class MLIPOutput:
    """Energies, forces and stresses of a batch of B structures (failed ones are NaN).

    Fields:
        energy_per_atom: ``(B,)`` eV/atom.
        forces: ``(N, 3)`` eV/Å, atoms of all structures concatenated in input order.
        stress: ``(B, 3, 3)`` eV/Å^3, ASE sign convention (``(1/V) dE/dstrain``).
        errors: ``B`` entries, ``None`` or a one-line reason the structure failed.
        fresh: ``B`` flags, False where a cached neighbour graph was reused (None: all fresh).
    """

    energy_per_atom: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    errors: list[str | None]
    fresh: list[bool] | None = None


@runtime_checkable
class MLIP(Protocol):
    """What the relaxer and scorer need from an interatomic potential."""

    name: str
    device: torch.device

    def predict(self, structures: list[Structure], compute_stress: bool = True) -> MLIPOutput:
        """Energies, forces (and stresses) of ``structures`` in one batched forward."""
        ...

    def ase_calculator(self) -> Calculator:
        """An ASE calculator for the same model (one-at-a-time reference path)."""
        ...


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class CHGNetMLIP:
    """CHGNet (pretrained weights from its wheel) with a batched energy/force/stress forward.

    CHGNet's energies are trained on MPtrj and are compatible with the MP2020 correction scheme,
    so they can be compared with MP formation energies and hulls directly.

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
    energy_correction = None

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
            graph_workers = (min(8, (os.cpu_count() or 1) // 2)
                             if self.device.type == "cuda" else 0)
        self.graph_workers = int(graph_workers)
        self._pool = None
        self._cache: dict[Hashable, tuple] = {}

    def _graph(self, structure: Structure):
        return _checked_graph(self.model.graph_converter, structure)

    def _build_graphs(self, structures: list[Structure]) -> list:
        """CrystalGraphs (or one-line error strings), in a process pool when configured."""
        if self.graph_workers > 0 and len(structures) >= 2 * self.graph_workers:
            if self._pool is None:
                import concurrent.futures
                import multiprocessing

                conv = self.model.graph_converter
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.graph_workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_graph_worker,
                    initargs=(conv.atom_graph_cutoff, conv.bond_graph_cutoff,
                              conv.algorithm),
                )
            args = [(s.atomic_numbers, np.array(s.lattice.matrix), np.array(s.frac_coords))
                    for s in structures]
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
        energy = torch.full((b,), math.nan, dtype=torch.float64)
        forces = [torch.full((n, 3), math.nan, dtype=torch.float64) for n in n_at]
        stress = torch.full((b, 3, 3), math.nan, dtype=torch.float64)
        if graphs:
            with warnings.catch_warnings():  # CHGNet's own tensor-conversion warnings
                warnings.simplefilter("ignore", UserWarning)
                if self.vectorized:
                    e, f_all, s_all = self._forward_vectorized(graphs, compute_stress)
                else:
                    e, f_all, s_all = self._forward_chgnet(graphs, compute_stress)
            e = e.detach().double().cpu()  # one device -> host copy per output
            f_split = torch.split(f_all.detach().double().cpu(), [n_at[i] for i in ok])
            if s_all is not None:
                s_all = s_all.detach().double().cpu()
            for k, i in enumerate(ok):
                energy[i] = e[k]
                forces[i] = f_split[k]
                if s_all is not None:
                    stress[i] = s_all[k]
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
                [bg[:, 0] + atom_off[ang_owner], bg[:, 1] + und_off[ang_owner],
                 bg[:, 3] + und_off[ang_owner]], dim=1
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
            comp.index_put_((atom_owner, z.long() - 1), torch.ones_like(z, dtype=comp.dtype),
                            accumulate=True)
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
        if not _within_skin(frac0, lat0, frac, lat, self.cutoff, self.graph_skin):
            return None
        return CrystalGraph(
            atomic_number=g.atomic_number,
            atom_frac_coord=torch.tensor(frac, dtype=g.atom_frac_coord.dtype,
                                         device=self.device, requires_grad=True),
            atom_graph=g.atom_graph,
            atom_graph_cutoff=g.atom_graph_cutoff,
            neighbor_image=g.neighbor_image,
            directed2undirected=g.directed2undirected,
            undirected2directed=g.undirected2directed,
            bond_graph=g.bond_graph,
            bond_graph_cutoff=g.bond_graph_cutoff,
            lattice=torch.tensor(lat, dtype=g.lattice.dtype, device=self.device,
                                 requires_grad=True),
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


class SevenNetMLIP:
    """SevenNet (pretrained weights from the ``sevenn`` wheel) with a batched forward.

    SevenNet-0 (``7net-0``, the 11 July 2024 weights, trained on MPtrj like CHGNet) is the
    default; ``7net-l3i5`` (the Matbench Discovery entry, slower: l_max 3) also ships in the
    wheel. Both load offline.

    ``predict`` builds one periodic neighbour list per structure (matscipy, on the CPU), stacks
    all structures into one graph and takes energies, forces and stresses from one SevenNet
    forward (forces and the virial from the gradient with respect to the edge vectors, as
    SevenNet does itself); same numbers as ``SevenNetCalculator`` one structure at a time
    (tested). During relaxation, neighbour lists are reused while atoms move less than
    ``graph_skin`` (see :meth:`CHGNetMLIP.predict`); SevenNet's polynomial cutoff envelope
    is ~0 within the skin of the cutoff.

    Args:
        model: a SevenNet checkpoint name (``7net-0``, ``7net-l3i5``, ...) or path.
        device: ``auto``, ``cpu`` or ``cuda``.
        graph_skin: Å; neighbour lists are rebuilt only after some edge length may have
            changed by this much (0: rebuild every step).
        neighbours: ``matscipy`` (CPU), ``torch`` (:func:`torch_neighbour_list` on the
            model's device; same edges, tested) or ``auto`` (torch on CUDA, else matscipy).
    """

    name = "sevennet"
    #: SevenNet-0 predicts MPtrj's raw DFT energies: scoring applies :func:`mp2020_corrected`.
    energy_correction = "mp2020"

    def __init__(
        self,
        model: str = "7net-0",
        device: str | torch.device | None = "auto",
        graph_skin: float = 0.05,
        neighbours: str = "auto",
    ):
        self.device = resolve_device(device)
        if neighbours == "auto":
            neighbours = "torch" if self.device.type == "cuda" else "matscipy"
        if neighbours not in ("torch", "matscipy"):
            raise ValueError(f"neighbours must be auto, torch or matscipy, not {neighbours!r}")
        self.neighbours = neighbours
        self.version = str(model)
        self.model, self.cutoff, self.type_map = _pretrained_sevennet(
            str(model), str(self.device))
        self.graph_skin = float(graph_skin)
        self._cache: dict[Hashable, tuple] = {}
        self._calc = None

    def _topology(self, s: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(src, dst, image)``: directed edges within the cutoff, ``image`` integer cell shifts."""
        unknown = sorted({el.symbol for el in s.composition.elements
                          if el.Z not in self.type_map})
        if unknown:
            raise ValueError(f"SevenNet has no type for {', '.join(unknown)}")
        if self.neighbours == "torch":
            src, dst, image = (t.cpu().numpy() for t in torch_neighbour_list(
                torch.as_tensor(np.array(s.lattice.matrix), device=self.device),
                torch.as_tensor(np.array(s.cart_coords), device=self.device), self.cutoff))
        else:
            src, dst, image = _neighbour_list(np.array(s.lattice.matrix),
                                              np.array(s.cart_coords), self.cutoff)
        lonely = len(s) - len(np.unique(src))
        if lonely:  # as CHGNet: an atom without neighbours is no crystal to score
            raise ValueError(f"{lonely} isolated atom(s): no neighbour within {self.cutoff:g} Å")
        return src, dst, image

    def predict(
        self,
        structures: list[Structure],
        compute_stress: bool = True,
        keys: list[Hashable | None] | None = None,
    ) -> MLIPOutput:
        """Batched SevenNet forward (``keys``: cache keys as in :meth:`CHGNetMLIP.predict`).

        Returns:
            :class:`MLIPOutput`; a structure with an element SevenNet does not know, or with
            non-finite outputs, has NaN outputs and a reason in ``errors``.
        """
        b = len(structures)
        n_at = [len(s) for s in structures]
        errors: list[str | None] = [None] * b
        fresh = [True] * b
        zs, poss, lats, edges, ok = [], [], [], [], []
        for i, s in enumerate(structures):
            key = keys[i] if keys is not None else None
            lat = np.array(s.lattice.matrix)
            frac = np.array(s.frac_coords)
            topo = None
            if key is not None and self.graph_skin > 0 and key in self._cache:
                topo0, frac0, lat0 = self._cache[key]
                if _within_skin(frac0, lat0, frac, lat, self.cutoff, self.graph_skin):
                    topo, fresh[i] = topo0, False
            if topo is None:
                try:
                    topo = self._topology(s)
                except Exception as exc:  # noqa: BLE001 - per structure
                    errors[i] = f"graph construction failed: {_one_line(exc)}"
                    continue
                if key is not None:
                    self._cache[key] = (topo, frac, lat)
            zs.append(np.array(s.atomic_numbers))
            poss.append(frac @ lat)
            lats.append(lat)
            edges.append(topo)
            ok.append(i)
        energy = torch.full((b,), math.nan, dtype=torch.float64)
        forces = [torch.full((n, 3), math.nan, dtype=torch.float64) for n in n_at]
        stress = torch.full((b, 3, 3), math.nan, dtype=torch.float64)
        if ok:
            start = np.cumsum([0] + [len(z) for z in zs])
            src = np.concatenate([t[0] + start[k] for k, t in enumerate(edges)])
            dst = np.concatenate([t[1] + start[k] for k, t in enumerate(edges)])
            image = np.concatenate([t[2] for t in edges])
            owner = np.repeat(np.arange(len(ok)), [len(z) for z in zs])
            dev = self.device
            e, f_all, s_all = self.forward_graph(
                torch.as_tensor(np.concatenate(zs), device=dev),
                torch.as_tensor(np.concatenate(poss), device=dev),
                torch.as_tensor(np.stack(lats), device=dev),
                torch.as_tensor(owner, device=dev),
                (torch.as_tensor(src, device=dev), torch.as_tensor(dst, device=dev),
                 torch.as_tensor(image, device=dev)),
                compute_stress,
            )
            e, s_all = e.cpu(), s_all.cpu()  # one device -> host copy per output
            f_split = torch.split(f_all.cpu(), [n_at[i] for i in ok])
            for k, i in enumerate(ok):
                energy[i] = e[k] / n_at[i]
                forces[i] = f_split[k]
                if compute_stress:
                    stress[i] = s_all[k]
        return _output(energy, forces, stress, errors, fresh, compute_stress)

    def unknown_species(self, z: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: atomic numbers ``z`` that SevenNet has no type for."""
        known = torch.zeros(max(int(z.max()) + 1, 1) if z.numel() else 1, dtype=torch.bool)
        for zz in self.type_map:
            if zz < known.shape[0]:
                known[zz] = True
        return ~known.to(z.device)[z]

    def forward_graph(
        self,
        z: torch.Tensor,
        cart: torch.Tensor,
        lattice: torch.Tensor,
        owner: torch.Tensor,
        edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        compute_stress: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One SevenNet forward over a whole batch given as tensors on the model's device
        (the GPU relaxation path: no pymatgen, no per-structure Python).

        Args:
            z: ``(N,)`` int64 atomic numbers (all known to the model, see
                :meth:`unknown_species`).
            cart: ``(N, 3)`` Å, Cartesian positions.
            lattice: ``(B, 3, 3)`` Å, lattice vectors as rows.
            owner: ``(N,)`` int64 crystal of each atom, sorted.
            edges: ``(src, dst, image)`` as from :func:`batched_neighbour_list` (built here
                on the model's device when None).
            compute_stress: kept for the interface; SevenNet's stress costs nothing extra.

        Returns:
            ``(B,)`` total energies (eV), ``(N, 3)`` forces (eV/Å), ``(B, 3, 3)`` stresses
            (eV/Å^3, ASE sign), float64 on the model's device. A crystal with an atom that
            has no neighbour within the cutoff gets finite but meaningless numbers: callers
            check that every atom is the source of some edge.
        """
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData

        del compute_stress
        if edges is None:
            edges = batched_neighbour_list(lattice, cart, owner, self.cutoff)
        src, dst, image = edges
        lat = lattice.to(torch.float64)
        pos = cart.to(torch.float64)
        b = lat.shape[0]
        vec = pos[dst] - pos[src] + torch.einsum("ei,eij->ej", image, lat[owner[src]])
        n_atoms = torch.bincount(owner, minlength=b)
        data = AtomGraphData(**{
            KEY.NODE_FEATURE: z,
            KEY.ATOMIC_NUMBERS: z,
            KEY.POS: pos.float(),
            KEY.EDGE_IDX: torch.stack([src, dst]),
            KEY.EDGE_VEC: vec.float(),
            KEY.CELL_VOLUME: torch.linalg.det(lat).abs().float(),
            KEY.NUM_ATOMS: n_atoms,
            KEY.BATCH: owner,
            KEY.INFO: {},
        })
        out = self.model(data)
        e = out[KEY.PRED_TOTAL_ENERGY].detach().double().reshape(-1)
        f = out[KEY.PRED_FORCE].detach().double()
        # SevenNet's stress: -(xx, yy, zz, xy, yz, zx) in eV/Å^3 (ASE sign: negate)
        v = -out[KEY.PRED_STRESS].detach().double().reshape(-1, 6)
        s = v[:, [0, 3, 5, 3, 1, 4, 5, 4, 2]].reshape(-1, 3, 3)
        return e, f, s

    def forget(self, keys: Iterable[Hashable]) -> None:
        """Drop cached neighbour lists (see ``keys`` of :meth:`predict`)."""
        for k in keys:
            self._cache.pop(k, None)

    def ase_calculator(self) -> Calculator:
        """SevenNet's own ASE calculator with the same weights (reference path)."""
        if self._calc is None:
            from sevenn.calculator import SevenNetCalculator

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._calc = SevenNetCalculator(model=self.version, device=str(self.device))
        return self._calc


@functools.lru_cache(maxsize=2)
def _pretrained_chgnet(device: str):
    """CHGNet's bundled weights, loaded once per process and device (inference only)."""
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(use_device="cpu", verbose=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


@functools.lru_cache(maxsize=4)
def _pretrained_sevennet(model: str, device: str):
    """SevenNet weights (a name of the wheel's pretrained models, or a checkpoint path), loaded
    once per process and device, in batch mode for inference: ``(model, cutoff, type_map)``."""
    try:
        import sevenn._keys as KEY
        from sevenn.util import load_checkpoint
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("SevenNet needs the sevenn package: pip install 'sevenn>=0.13,<0.14'"
                          ) from exc
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        cp = load_checkpoint(model)
        m = cp.build_model()
    m.set_is_batch_data(True)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.to(device).eval(), float(cp.config[KEY.CUTOFF]), dict(cp.config[KEY.TYPE_MAP])


def _neighbour_list(lattice: np.ndarray, cart: np.ndarray, cutoff: float):
    """Periodic directed edges ``i -> j`` within ``cutoff`` (no self-edge at zero distance):
    ``(src, dst, image)`` with ``r_j + image @ lattice - r_i`` the edge vector."""
    from matscipy.neighbours import neighbour_list

    src, dst, image = neighbour_list("ijS", pbc=np.array([True] * 3), cell=lattice,
                                     positions=cart, cutoff=cutoff)
    return src.astype(np.int64), dst.astype(np.int64), image.astype(np.float64)


def torch_neighbour_list(lattice: torch.Tensor, cart: torch.Tensor, cutoff: float):
    """:func:`_neighbour_list` in torch, on the tensors' device (one structure; see
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
    cross = torch.stack([torch.linalg.cross(lat[:, 1], lat[:, 2]),
                         torch.linalg.cross(lat[:, 2], lat[:, 0]),
                         torch.linalg.cross(lat[:, 0], lat[:, 1])], dim=1)  # (B, 3, 3)
    reps = torch.ceil(cutoff * cross.norm(dim=2) / vol[:, None]).long()  # (B, 3)
    width = 2 * reps + 1
    n_img = width.prod(1)  # (B,) images each crystal needs
    # every ordered pair (i, j) of atoms of the same crystal
    counts = torch.bincount(owner, minlength=b)
    first = torch.cumsum(counts, 0) - counts
    per_atom = counts[owner]
    i_all = torch.repeat_interleave(torch.arange(n, device=dev), per_atom)
    pair_start = torch.cumsum(per_atom, 0) - per_atom
    j_all = (first[owner[i_all]]
             + torch.arange(i_all.shape[0], device=dev) - pair_start[i_all])
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
        image = torch.stack([k // (w[:, 1] * w[:, 2]) - r[:, 0],
                             (k // w[:, 2]) % w[:, 1] - r[:, 1],
                             k % w[:, 2] - r[:, 2]], dim=1).to(torch.float64)
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


def _within_skin(frac0, lat0, frac, lat, cutoff: float, skin: float) -> bool:
    """True when no edge length within ``cutoff`` can have changed by ``skin`` (Å) or more
    between the cached geometry ``(frac0, lat0)`` and ``(frac, lat)``."""
    if frac.shape != frac0.shape:
        return False
    strain = np.linalg.solve(lat0, lat) - np.eye(3)
    moved = 2 * np.linalg.norm((frac - frac0) @ lat, axis=1).max()
    moved += cutoff * np.linalg.norm(strain, 2)
    return bool(moved < skin)


def mp2020_corrected(structures: list[Structure], energies_per_atom) -> np.ndarray:
    """Energies per atom with the MP2020 anion and GGA/GGA+U mixing corrections applied.

    For an MLIP trained on MPtrj's *raw* DFT energies (SevenNet-0): its energies become
    comparable with MP formation energies and hulls only after the same corrections MP applies
    to its own DFT entries. GGA+U is assumed where MP's input set would use it (an oxide or
    fluoride with Co, Cr, Fe, Mn, Mo, Ni, V or W, at MP's U values). A structure the scheme
    rejects, or a non-finite energy, gives NaN. Measured on 120 WBM structures without it:
    SevenNet-0 formation energies of oxides were 0.56 eV/atom too high, CHGNet's were not
    (CHGNet predicts corrected energies).
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    compat = _mp2020()
    out = np.full(len(structures), np.nan)
    for i, (s, e) in enumerate(zip(structures, energies_per_atom, strict=True)):
        e = float(e)
        if not math.isfinite(e):
            continue
        comp = s.composition
        anion = max(comp.elements, key=lambda el: el.X).symbol
        u = compat.u_settings.get(anion, {})
        hub = {el.symbol: float(u[el.symbol]) for el in comp.elements if u.get(el.symbol, 0)}
        entry = ComputedStructureEntry(
            s, e * len(s),
            parameters={"run_type": "GGA+U" if hub else "GGA", "hubbards": hub,
                        "is_hubbard": bool(hub)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                done = compat.process_entry(entry, clean=True)
            except Exception:  # noqa: BLE001 - a rejected entry is per structure
                done = None
        if done is not None:
            out[i] = done.energy / len(s)
    return out


@functools.lru_cache(maxsize=1)
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def load_mlip(name: str = DEFAULT_MLIP, device: str | torch.device | None = "auto", **kwargs) -> MLIP:
    """Build an MLIP by name: ``chgnet`` or ``sevennet`` (SevenNet-0; ``model=`` picks
    another SevenNet checkpoint, e.g. ``7net-l3i5``)."""
    key = name.lower()
    if key == "chgnet":
        return CHGNetMLIP(device=device, **kwargs)
    if key in ("sevennet", "7net"):
        return SevenNetMLIP(device=device, **kwargs)
    raise ValueError(f"unknown MLIP {name!r}; choose 'chgnet' or 'sevennet'")


def _checked_graph(conv, structure: Structure):
    n = len(structure)
    graph = conv(structure, graph_id=None)
    owners = set(graph.atom_graph[:, 0].tolist()) if graph.atom_graph.numel() else set()
    if len(owners) < n:
        raise ValueError(
            f"{n - len(owners)} isolated atom(s): no neighbour within "
            f"{conv.atom_graph_cutoff:g} Å"
        )
    return graph


_WORKER_CONVERTER = None


def _init_graph_worker(atom_cutoff: float, bond_cutoff: float, algorithm: str) -> None:
    global _WORKER_CONVERTER
    torch.set_num_threads(1)
    from chgnet.graph import CrystalGraphConverter

    _WORKER_CONVERTER = CrystalGraphConverter(
        atom_graph_cutoff=atom_cutoff, bond_graph_cutoff=bond_cutoff, algorithm=algorithm,
        on_isolated_atoms="error", verbose=False,
    )


def _graph_worker(args):
    from pymatgen.core import Lattice, Structure

    z, lat, frac = args
    try:
        return _checked_graph(_WORKER_CONVERTER, Structure(Lattice(lat), list(z), frac))
    except Exception as exc:  # noqa: BLE001
        return _one_line(exc)


def _output(energy, forces: list, stress, errors: list, fresh: list, compute_stress: bool):
    """:class:`MLIPOutput` with a reason in ``errors`` wherever an output is not finite."""
    for i in range(len(errors)):
        if errors[i] is None:
            finite = bool(torch.isfinite(energy[i])) and bool(torch.isfinite(forces[i]).all())
            if compute_stress:
                finite = finite and bool(torch.isfinite(stress[i]).all())
            if not finite:
                errors[i] = "non-finite energy, forces or stress"
    return MLIPOutput(
        energy, torch.cat(forces) if forces else torch.zeros(0, 3), stress, errors, fresh
    )


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:200]
