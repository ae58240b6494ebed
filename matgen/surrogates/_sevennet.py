"""SevenNet behind the :class:`~matgen.surrogates._mlip.MLIP` interface: weights from the
``sevenn`` wheel, all structures of a batch stacked into one graph for one forward."""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from matgen.surrogates._mlip import (
    SEVENNET_CHECKPOINTS,
    MLIPOutput,
    _one_line,
    _output,
    fill_outputs,
    nan_outputs,
    resolve_device,
)
from matgen.surrogates._neighbours import (
    batched_neighbour_list,
    matscipy_neighbour_list,
    torch_neighbour_list,
    within_skin,
)

if TYPE_CHECKING:  # pragma: no cover
    from ase.calculators.calculator import Calculator
    from pymatgen.core import Structure


class SevenNetMLIP:
    """SevenNet (pretrained weights from the ``sevenn`` wheel) with a batched forward.

    SevenNet-l3i5 (``7net-l3i5``, the Matbench Discovery entry, l_max 3; MLIP name
    ``sevennet``) is the default: the most accurate on WBM (F1 0.762 on 1,000 structures).
    SevenNet-0 (``7net-0``, the 11 July 2024 weights, trained on MPtrj like CHGNet; MLIP name
    ``sevennet-0``) costs 2.6x less CPU time in ``matgen score`` (F1 0.728;
    ``benchmarks/results/score_cost_cpu_mlips.json``). Both ship in the wheel and load offline.
    The multi-fidelity ``7net-mf-0`` (SevenNet-MF-0) needs a ``modal``: ``PBE`` (MPtrj's
    PBE(+U) scale, which MP's energy corrections assume) or ``R2SCAN``.

    ``predict`` builds one periodic neighbour list per structure (matscipy, on the CPU), stacks
    all structures into one graph and takes energies, forces and stresses from one SevenNet
    forward (forces and the virial from the gradient with respect to the edge vectors, as
    SevenNet does itself); same numbers as ``SevenNetCalculator`` one structure at a time
    (tested). During relaxation, neighbour lists are reused while atoms move less than
    ``graph_skin`` (see :meth:`CHGNetMLIP.predict`); SevenNet's polynomial cutoff envelope
    is ~0 within the skin of the cutoff.

    Args:
        model: a SevenNet checkpoint name (``7net-0``, ``7net-l3i5``, ``7net-mf-0``, ...) or
            path.
        modal: the fidelity of a multi-fidelity checkpoint (``PBE`` or ``R2SCAN`` for
            ``7net-mf-0``); required for such a checkpoint, an error for any other.
        device: ``auto``, ``cpu`` or ``cuda``.
        graph_skin: Å; neighbour lists are rebuilt only after some edge length may have
            changed by this much (0: rebuild every step).
        neighbours: ``matscipy`` (CPU), ``torch`` (:func:`torch_neighbour_list` on the
            model's device; same edges, tested) or ``auto`` (torch on CUDA, else matscipy).
    """

    #: the :func:`~matgen.surrogates.load_mlip` name of the checkpoint (``sevennet``: l3i5,
    #: ``sevennet-0``), ``sevennet-<version>`` for any other; outputs and hulls are named by it
    name = "sevennet"
    #: SevenNet predicts MPtrj's raw (uncorrected PBE/PBE+U) DFT energies: scoring adds the MP
    #: hull scale's corrections (:func:`~matgen.surrogates._mlip.to_hull_scale`).
    energy_scale = "raw"

    def __init__(
        self,
        model: str = "7net-l3i5",
        device: str | torch.device | None = "auto",
        graph_skin: float = 0.05,
        neighbours: str = "auto",
        modal: str | None = None,
    ):
        self.device = resolve_device(device)
        if neighbours == "auto":
            neighbours = "torch" if self.device.type == "cuda" else "matscipy"
        if neighbours not in ("torch", "matscipy"):
            raise ValueError(f"neighbours must be auto, torch or matscipy, not {neighbours!r}")
        self.neighbours = neighbours
        self.model, self.cutoff, self.type_map = _pretrained_sevennet(str(model), str(self.device))
        modals = list(getattr(self.model, "modal_map", None) or {})
        if modals and modal not in modals:
            raise ValueError(f"SevenNet checkpoint {model!r} needs modal= one of {modals}, "
                             f"not {modal!r}")
        if modal is not None and not modals:
            raise ValueError(f"SevenNet checkpoint {model!r} has no modal (got {modal!r})")
        self.modal = modal
        #: the checkpoint, with ``:<modal>`` for a multi-fidelity one (``7net-mf-0:PBE``)
        self.version = str(model) if modal is None else f"{model}:{modal}"
        self._model_name = str(model)
        self.name = next((k for k, v in SEVENNET_CHECKPOINTS.items() if v == self.version),
                         "sevennet-" + self.version.replace(":", "-"))
        self.graph_skin = float(graph_skin)
        self._cache: dict[Hashable, tuple] = {}
        self._calc = None

    def _topology(self, s: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(src, dst, image)``: directed edges within the cutoff, ``image`` integer cell shifts."""
        unknown = sorted({el.symbol for el in s.composition.elements if el.Z not in self.type_map})
        if unknown:
            raise ValueError(f"SevenNet has no type for {', '.join(unknown)}")
        if self.neighbours == "torch":
            src, dst, image = (
                t.cpu().numpy()
                for t in torch_neighbour_list(
                    torch.as_tensor(np.array(s.lattice.matrix), device=self.device),
                    torch.as_tensor(np.array(s.cart_coords), device=self.device),
                    self.cutoff,
                )
            )
        else:
            src, dst, image = matscipy_neighbour_list(
                np.array(s.lattice.matrix), np.array(s.cart_coords), self.cutoff
            )
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
                if within_skin(frac0, lat0, frac, lat, self.cutoff, self.graph_skin):
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
        energy, forces, stress = nan_outputs(n_at)
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
                (
                    torch.as_tensor(src, device=dev),
                    torch.as_tensor(dst, device=dev),
                    torch.as_tensor(image, device=dev),
                ),
                compute_stress,
            )
            per_atom = e.cpu() / torch.tensor([n_at[i] for i in ok], dtype=e.dtype)
            fill_outputs(  # one device -> host copy per output
                (energy, forces, stress), ok, n_at, per_atom, f_all.cpu(),
                s_all.cpu() if compute_stress else None,
            )
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
        data = AtomGraphData(
            **{
                KEY.NODE_FEATURE: z,
                KEY.ATOMIC_NUMBERS: z,
                KEY.POS: pos.float(),
                KEY.EDGE_IDX: torch.stack([src, dst]),
                KEY.EDGE_VEC: vec.float(),
                KEY.CELL_VOLUME: torch.linalg.det(lat).abs().float(),
                KEY.NUM_ATOMS: n_atoms,
                KEY.BATCH: owner,
                KEY.INFO: {},
            }
        )
        if self.modal is not None:  # one fidelity name per crystal of the batch
            data[KEY.DATA_MODALITY] = [self.modal] * b
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
                self._calc = SevenNetCalculator(
                    model=self._model_name, device=str(self.device), modal=self.modal
                )
        return self._calc


@functools.lru_cache(maxsize=4)
def _pretrained_sevennet(model: str, device: str):
    """SevenNet weights (a name of the wheel's pretrained models, or a checkpoint path), loaded
    once per process and device, in batch mode for inference: ``(model, cutoff, type_map)``."""
    try:
        import sevenn._keys as KEY
        from sevenn.util import load_checkpoint
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError(
            "SevenNet needs the sevenn package: pip install 'sevenn>=0.13,<0.14'"
        ) from exc
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        cp = load_checkpoint(model)
        m = cp.build_model()
    m.set_is_batch_data(True)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.to(device).eval(), float(cp.config[KEY.CUTOFF]), dict(cp.config[KEY.TYPE_MAP])
