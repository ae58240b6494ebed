"""CrystalBatch: the one batch contract shared by every layer of matgen."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from pymatgen.core import Structure

#: Largest atomic number matgen models (H..Bi plus the actinides up to Pu: Z = 1..94).
MAX_Z = 94


@dataclass
class CrystalBatch:
    """A batch of B periodic crystals with N atoms in total.

    Fields (shapes and units):
        atomic_numbers: ``(N,)`` int64, Z in ``[1, MAX_Z]``.
        frac_coords: ``(N, 3)`` float, fractional coordinates wrapped into ``[0, 1)``.
        lattice: ``(B, 3, 3)`` float, lattice vectors as rows, in Å
            (``cart = frac @ lattice``).
        num_atoms: ``(B,)`` int64, atoms per crystal; ``num_atoms.sum() == N``.
        properties: ``{name: (B,) float}``; NaN marks a missing label.
        ids: ``B`` strings (material_id or sample id).

    Derived (not stored): ``batch`` ``(N,)`` crystal index of each atom, ``ptr`` ``(B+1,)``
    offsets, ``cart_coords`` ``(N, 3)`` in Å, ``volume`` ``(B,)`` in Å^3.
    """

    atomic_numbers: torch.Tensor
    frac_coords: torch.Tensor
    lattice: torch.Tensor
    num_atoms: torch.Tensor
    properties: dict[str, torch.Tensor] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = int(self.atomic_numbers.shape[0])
        b = int(self.lattice.shape[0])
        if self.frac_coords.shape != (n, 3):
            raise ValueError(f"frac_coords must be ({n}, 3), got {tuple(self.frac_coords.shape)}")
        if self.lattice.shape[1:] != (3, 3):
            raise ValueError(f"lattice must be (B, 3, 3), got {tuple(self.lattice.shape)}")
        if self.num_atoms.shape != (b,) or int(self.num_atoms.sum()) != n:
            raise ValueError("num_atoms must be (B,) and sum to the number of atoms")
        if not self.ids:
            self.ids = [str(i) for i in range(b)]
        if len(self.ids) != b:
            raise ValueError(f"ids has {len(self.ids)} entries for {b} crystals")
        for k, v in self.properties.items():
            if v.shape != (b,):
                raise ValueError(f"property {k!r} must be ({b},), got {tuple(v.shape)}")

    # ------------------------------------------------------------------ derived fields
    @property
    def num_crystals(self) -> int:
        return int(self.lattice.shape[0])

    @property
    def device(self) -> torch.device:
        return self.frac_coords.device

    @property
    def batch(self) -> torch.Tensor:
        """``(N,)`` int64 index of the crystal each atom belongs to."""
        return torch.repeat_interleave(  # output_size: no host sync for the length on a GPU
            torch.arange(self.num_crystals, device=self.device), self.num_atoms,
            output_size=self.atomic_numbers.shape[0],
        )

    @property
    def ptr(self) -> torch.Tensor:
        """``(B+1,)`` offsets of each crystal's atoms."""
        return torch.cat([self.num_atoms.new_zeros(1), torch.cumsum(self.num_atoms, 0)])

    @property
    def cart_coords(self) -> torch.Tensor:
        """``(N, 3)`` Cartesian positions in Å."""
        return torch.einsum("ni,nij->nj", self.frac_coords, self.lattice[self.batch])

    @property
    def volume(self) -> torch.Tensor:
        """``(B,)`` cell volume in Å^3 (absolute value of the determinant)."""
        return torch.linalg.det(self.lattice).abs()

    # ------------------------------------------------------------------ tensor plumbing
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move to ``device``; ``dtype`` applies to the float fields only."""

        def f(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype if x.is_floating_point() else None)

        return replace(
            self,
            atomic_numbers=self.atomic_numbers.to(device),
            frac_coords=f(self.frac_coords),
            lattice=f(self.lattice),
            num_atoms=self.num_atoms.to(device),
            properties={k: f(v) for k, v in self.properties.items()},
            ids=list(self.ids),
        )

    def __len__(self) -> int:
        return self.num_crystals

    def __getitem__(self, idx: int | slice | Sequence[int] | torch.Tensor) -> CrystalBatch:
        """Select crystals (not atoms) by index, slice, list or boolean mask."""
        if isinstance(idx, int):
            sel = [idx % self.num_crystals]
        elif isinstance(idx, slice):
            sel = list(range(self.num_crystals))[idx]
        elif isinstance(idx, torch.Tensor) and idx.dtype == torch.bool:
            sel = torch.nonzero(idx).flatten().tolist()
        else:
            sel = [int(i) for i in idx]
        ptr = self.ptr.tolist()
        atom_idx = [a for i in sel for a in range(ptr[i], ptr[i + 1])]
        ai = torch.as_tensor(atom_idx, dtype=torch.long, device=self.device)
        ci = torch.as_tensor(sel, dtype=torch.long, device=self.device)
        return CrystalBatch(
            atomic_numbers=self.atomic_numbers[ai],
            frac_coords=self.frac_coords[ai],
            lattice=self.lattice[ci],
            num_atoms=self.num_atoms[ci],
            properties={k: v[ci] for k, v in self.properties.items()},
            ids=[self.ids[i] for i in sel],
        )

    @classmethod
    def collate(cls, items: Iterable[CrystalBatch]) -> CrystalBatch:
        """Concatenate batches; a property missing from some items is NaN there."""
        items = list(items)
        if not items:
            raise ValueError("cannot collate an empty list of crystals")
        keys = sorted({k for it in items for k in it.properties})
        props = {}
        for k in keys:
            props[k] = torch.cat(
                [
                    it.properties[k]
                    if k in it.properties
                    else torch.full((it.num_crystals,), float("nan"), dtype=it.lattice.dtype)
                    for it in items
                ]
            )
        return cls(
            atomic_numbers=torch.cat([it.atomic_numbers for it in items]),
            frac_coords=torch.cat([it.frac_coords for it in items]),
            lattice=torch.cat([it.lattice for it in items]),
            num_atoms=torch.cat([it.num_atoms for it in items]),
            properties=props,
            ids=[i for it in items for i in it.ids],
        )

    def split(self) -> list[CrystalBatch]:
        """One single-crystal batch per crystal."""
        return [self[i] for i in range(self.num_crystals)]

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_structures(
        cls,
        structures: Sequence[Structure],
        ids: Sequence[str] | None = None,
        properties: dict[str, Sequence[float]] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> CrystalBatch:
        """Build from ordered pymatgen structures (a disordered site raises ValueError)."""

        def arrays(item):
            i, s = item
            if not s.is_ordered:
                name = ids[i] if ids is not None else str(i)
                raise ValueError(f"{name}: partial occupancies (disordered sites) not supported")
            z = np.array([site.specie.Z for site in s], dtype=np.int64)
            return z, s.frac_coords, s.lattice.matrix

        return cls._from_items(enumerate(structures), arrays, ids, properties, dtype)

    @classmethod
    def from_atoms(
        cls,
        atoms_list: Sequence[Atoms],
        ids: Sequence[str] | None = None,
        properties: dict[str, Sequence[float]] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> CrystalBatch:
        """Build from periodic ASE ``Atoms``."""
        return cls._from_items(
            atoms_list,
            lambda a: (
                np.asarray(a.numbers, dtype=np.int64),
                a.get_scaled_positions(wrap=False),
                np.asarray(a.cell[:], dtype=float),
            ),
            ids, properties, dtype,
        )

    @classmethod
    def _from_items(cls, items, arrays, ids, properties, dtype) -> CrystalBatch:
        """Build from any crystals; ``arrays(item)`` gives its ``(Z, frac, lattice)`` arrays
        (fractional coordinates are wrapped into ``[0, 1)`` here)."""
        zs, fc, lat, na = [], [], [], []
        for item in items:
            z, frac, lattice = arrays(item)
            zs.append(z)
            fc.append(np.mod(frac, 1.0))
            lat.append(lattice)
            na.append(len(z))
        return cls._from_arrays(zs, fc, lat, na, ids, properties, dtype)

    @classmethod
    def _from_arrays(cls, zs, fc, lat, na, ids, properties, dtype) -> CrystalBatch:
        b = len(na)
        frac = torch.as_tensor(np.concatenate(fc) if fc else np.zeros((0, 3)), dtype=dtype)
        frac = torch.where(frac >= 1.0, frac - 1.0, frac)  # mod(-1e-17, 1) == 1.0 in float
        props = {
            k: torch.as_tensor(np.asarray(v, dtype=float), dtype=dtype)
            for k, v in (properties or {}).items()
        }
        return cls(
            atomic_numbers=torch.as_tensor(
                np.concatenate(zs) if zs else np.zeros(0, dtype=np.int64)
            ),
            frac_coords=frac,
            lattice=torch.as_tensor(np.stack(lat) if lat else np.zeros((0, 3, 3)), dtype=dtype),
            num_atoms=torch.as_tensor(na, dtype=torch.long).reshape(b),
            properties=props,
            ids=[str(i) for i in ids] if ids is not None else [],
        )

    def to_structures(self) -> list[Structure]:
        """One pymatgen ``Structure`` per crystal (properties go to ``structure.properties``)."""
        from pymatgen.core import Lattice, Structure

        out = []
        for i, z, f, lat in self._numpy_crystals():
            s = Structure(Lattice(lat), z.tolist(), f)
            s.properties = {k: float(v[i]) for k, v in self.properties.items()}
            s.properties["material_id"] = self.ids[i]
            out.append(s)
        return out

    def to_atoms(self) -> list[Atoms]:
        """One periodic ASE ``Atoms`` per crystal; ids and properties go to ``atoms.info``."""
        from ase import Atoms

        out = []
        for i, z, f, lat in self._numpy_crystals():
            a = Atoms(numbers=z, scaled_positions=f, cell=lat, pbc=True)
            a.info["material_id"] = self.ids[i]
            for k, v in self.properties.items():
                a.info[k] = float(v[i])
            out.append(a)
        return out

    def _numpy_crystals(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(i, Z (n,), frac (n, 3), lattice (3, 3))`` of each crystal as NumPy arrays (float64
        coordinates and lattice)."""
        z = self.atomic_numbers.cpu().numpy()
        f = self.frac_coords.detach().cpu().double().numpy()
        lat = self.lattice.detach().cpu().double().numpy()
        ptr = self.ptr.tolist()
        for i in range(self.num_crystals):
            yield i, z[ptr[i] : ptr[i + 1]], f[ptr[i] : ptr[i + 1]], lat[i]
