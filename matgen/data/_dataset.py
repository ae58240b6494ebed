"""CrystalDataset (packed tensors, fast vectorised batching) and load_dataset (with a cache)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from matgen._files import atomic_path
from matgen.crystal import CrystalBatch, EntryProblem, ReadResult, ValidationOptions, read_crystals
from matgen.data._download import cache_dir, file_sha256
from matgen.data._registry import resolve_source

log = logging.getLogger("matgen.data")

#: Bump when the processed-cache layout or the processing changes.
CACHE_VERSION = 3  # 3: which skipped entries were left out by max_atoms


@dataclass(frozen=True)
class DatasetStats:
    """Summary statistics of a dataset.

    Attributes:
        num_crystals: crystals kept.
        num_atoms_total: atoms over all crystals.
        atoms_per_cell: ``{n: count}`` histogram of atoms per cell.
        elements: ``{symbol: number of crystals containing it}``.
        volume_per_atom_mean / volume_per_atom_std: in Å^3 per atom.
        properties: ``{name: {"mean", "std", "min", "max", "count", "missing"}}`` over the
            non-missing labels.
    """

    num_crystals: int
    num_atoms_total: int
    atoms_per_cell: dict[int, int]
    elements: dict[str, int]
    volume_per_atom_mean: float
    volume_per_atom_std: float
    properties: dict[str, dict[str, float]] = field(default_factory=dict)


class CrystalDataset:
    """Crystals held as packed tensors; ``batch(indices)`` slices them without pymatgen.

    Packed fields (shapes, units): ``atomic_numbers (N,) int64``, ``frac_coords (N, 3)`` in
    [0, 1), ``lattice (B, 3, 3)`` rows in Å, ``num_atoms (B,) int64``, ``ptr (B+1,)``,
    ``properties {name: (B,)}`` (NaN = missing label), ``ids``, ``formulas`` (reduced
    formulas), ``metadata {column: B strings}``.

    Provenance: ``name``, ``split``, ``source`` (the file read), ``sha256`` (of the source),
    ``errors`` (skipped entries with reasons), ``num_entries`` (entries in the source),
    ``nan_labels`` ({property: crystals whose label is missing}).
    """

    def __init__(
        self,
        atomic_numbers: torch.Tensor,
        frac_coords: torch.Tensor,
        lattice: torch.Tensor,
        num_atoms: torch.Tensor,
        properties: dict[str, torch.Tensor] | None = None,
        ids: Sequence[str] | None = None,
        formulas: Sequence[str] | None = None,
        metadata: dict[str, list[str]] | None = None,
        *,
        name: str = "",
        split: str = "",
        source: str = "",
        sha256: str = "",
        errors: Sequence[EntryProblem] = (),
        num_entries: int | None = None,
        nan_labels: dict[str, int] | None = None,
    ) -> None:
        self.atomic_numbers = atomic_numbers
        self.frac_coords = frac_coords
        self.lattice = lattice
        self.num_atoms = num_atoms
        self.ptr = torch.cat([num_atoms.new_zeros(1), torch.cumsum(num_atoms, 0)])
        self.properties = dict(properties or {})
        b = int(num_atoms.shape[0])
        self.ids = list(ids) if ids is not None else [str(i) for i in range(b)]
        self.formulas = list(formulas) if formulas is not None else [""] * b
        self.metadata = dict(metadata or {})
        self.name = name
        self.split = split
        self.source = source
        self.sha256 = sha256
        self.errors = list(errors)
        self.num_entries = num_entries if num_entries is not None else b + len(self.errors)
        self.nan_labels = dict(nan_labels or {})

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_batch(cls, batch: CrystalBatch, **kwargs) -> CrystalDataset:
        """Wrap a batch (e.g. a :class:`~matgen.crystal.ReadResult`'s)."""
        return cls(
            batch.atomic_numbers.cpu(),
            batch.frac_coords.cpu(),
            batch.lattice.cpu(),
            batch.num_atoms.cpu(),
            {k: v.cpu() for k, v in batch.properties.items()},
            list(batch.ids),
            **kwargs,
        )

    @classmethod
    def from_read_result(cls, result: ReadResult, **kwargs) -> CrystalDataset:
        return cls.from_batch(
            result.batch,
            formulas=result.formulas,
            metadata=result.metadata,
            errors=result.errors,
            num_entries=result.num_entries,
            nan_labels=result.nan_labels,
            **kwargs,
        )

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    def __repr__(self) -> str:
        return (
            f"CrystalDataset(name={self.name!r}, split={self.split!r}, crystals={len(self)}, "
            f"atoms={int(self.atomic_numbers.shape[0])}, properties={self.property_names}, "
            f"skipped={len(self.errors)})"
        )

    @property
    def property_names(self) -> list[str]:
        return list(self.properties)

    @property
    def dtype(self) -> torch.dtype:
        return self.frac_coords.dtype

    def __getitem__(self, idx: int | slice | Sequence[int] | torch.Tensor) -> CrystalBatch:
        """``dataset[i]`` is a one-crystal batch; a slice, list or tensor gives a batch."""
        if isinstance(idx, int | np.integer):
            i = int(idx)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} crystals")
            return self.batch([i % len(self)])
        if isinstance(idx, slice):
            return self.batch(torch.arange(len(self))[idx])
        return self.batch(idx)

    def batch(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> CrystalBatch:
        """Gather crystals into a :class:`CrystalBatch` with vectorised tensor indexing.

        Args:
            indices: ``(B,)`` crystal indices (any order, repeats allowed) or a boolean mask.

        Returns:
            A CPU batch in the dataset's dtype; move it with ``.to(device)``.
        """
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        idx = idx.to(torch.long).reshape(-1)
        na = self.num_atoms[idx]
        starts = self.ptr[idx]
        new_ptr = torch.cumsum(na, 0) - na
        atom_idx = torch.arange(int(na.sum())) + torch.repeat_interleave(starts - new_ptr, na)
        il = idx.tolist()
        return CrystalBatch(
            atomic_numbers=self.atomic_numbers[atom_idx],
            frac_coords=self.frac_coords[atom_idx],
            lattice=self.lattice[idx],
            num_atoms=na,
            properties={k: v[idx] for k, v in self.properties.items()},
            ids=[self.ids[i] for i in il] if il else [],
        )

    def to_batch(self) -> CrystalBatch:
        """All crystals as one batch."""
        return self.batch(torch.arange(len(self)))

    def subset(self, indices: Sequence[int] | torch.Tensor) -> CrystalDataset:
        """A new dataset holding only ``indices`` (e.g. a split of a path dataset)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        b = self.batch(idx)
        il = idx.tolist()
        return CrystalDataset.from_batch(
            b,
            formulas=[self.formulas[i] for i in il],
            metadata={k: [v[i] for i in il] for k, v in self.metadata.items()},
            name=self.name,
            split=self.split,
            source=self.source,
            sha256=self.sha256,
        )

    def random_split(self, fractions: Sequence[float], seed: int = 0) -> list[CrystalDataset]:
        """Split into disjoint random subsets (e.g. ``[0.9, 0.1]`` for train / val).

        Args:
            fractions: shares summing to 1; the last subset takes the rounding remainder.
            seed: permutation seed (same seed, same split).
        """
        if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        sizes = [round(f * len(self)) for f in fractions[:-1]]
        sizes.append(len(self) - sum(sizes))
        out, lo = [], 0
        for n in sizes:
            out.append(self.subset(perm[lo : lo + n].sort().values))
            lo += n
        return out

    def loader(
        self,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ):
        """Yield batches of ``batch_size`` crystals (a simple epoch iterator)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for s in range(0, stop, batch_size):
            yield self.batch(order[s : s + batch_size])

    # ---------------------------------------------------------------- statistics
    def stats(self) -> DatasetStats:
        """Counts, element occurrence, atoms-per-cell histogram, volume and property stats."""
        from matgen.crystal._validate import symbol

        vol = torch.linalg.det(self.lattice.double()).abs()
        vpa = (vol / self.num_atoms.double()).numpy() if len(self) else np.zeros(0)
        hist = Counter(self.num_atoms.tolist())
        # elements: count crystals containing each element
        b = torch.repeat_interleave(torch.arange(len(self)), self.num_atoms)
        pairs = torch.unique(torch.stack([b, self.atomic_numbers]), dim=1)
        zc = Counter(pairs[1].tolist())
        props = {}
        for k, v in self.properties.items():
            x = v.double().numpy()
            ok = x[np.isfinite(x)]
            props[k] = {
                "mean": float(ok.mean()) if ok.size else float("nan"),
                "std": float(ok.std()) if ok.size else float("nan"),
                "min": float(ok.min()) if ok.size else float("nan"),
                "max": float(ok.max()) if ok.size else float("nan"),
                "count": int(ok.size),
                "missing": int(x.size - ok.size),
            }
        return DatasetStats(
            num_crystals=len(self),
            num_atoms_total=int(self.atomic_numbers.shape[0]),
            atoms_per_cell=dict(sorted(hist.items())),
            elements={symbol(z): c for z, c in sorted(zc.items(), key=lambda t: -t[1])},
            volume_per_atom_mean=float(vpa.mean()) if vpa.size else float("nan"),
            volume_per_atom_std=float(vpa.std()) if vpa.size else float("nan"),
            properties=props,
        )

    # ---------------------------------------------------------------- (de)serialisation
    def _state(self) -> dict:
        return {
            "version": CACHE_VERSION,
            "atomic_numbers": self.atomic_numbers,
            "frac_coords": self.frac_coords.double(),
            "lattice": self.lattice.double(),
            "num_atoms": self.num_atoms,
            "properties": {k: v.double() for k, v in self.properties.items()},
            "ids": _pack(self.ids),
            "formulas": _pack(self.formulas),
            "metadata": {k: _pack(v) for k, v in self.metadata.items()},
            "error_entries": _pack([e.entry for e in self.errors]),
            "error_reasons": _pack([e.reason for e in self.errors]),
            "error_excluded": torch.tensor([e.excluded for e in self.errors], dtype=torch.bool),
            "num_entries": self.num_entries,
            "nan_labels": self.nan_labels,
            "sha256": self.sha256,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the packed tensors atomically (``matgen._files.atomic_path``)."""
        p = Path(path)
        with atomic_path(p, suffix=".part") as tmp:
            torch.save(self._state(), tmp)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32, **kwargs):
        """Read a file written by :meth:`save`."""
        st = torch.load(path, map_location="cpu", weights_only=True)
        if st.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {st.get('version')} != {CACHE_VERSION}")
        return cls(
            st["atomic_numbers"],
            st["frac_coords"].to(dtype),
            st["lattice"].to(dtype),
            st["num_atoms"],
            {k: v.to(dtype) for k, v in st["properties"].items()},
            _unpack(st["ids"]),
            _unpack(st["formulas"]),
            {k: _unpack(v) for k, v in st["metadata"].items()},
            sha256=st["sha256"],
            errors=[
                EntryProblem(a, b, bool(x))
                for a, b, x in zip(_unpack(st["error_entries"]), _unpack(st["error_reasons"]),
                                   st["error_excluded"].tolist(), strict=True)
            ],
            num_entries=st["num_entries"],
            nan_labels=st["nan_labels"],
            **kwargs,
        )


_SEP = "\x1e"  # ASCII record separator: packs a list of strings into one string


def _pack(items: Sequence[str]) -> str | list[str]:
    """One string for a list of strings (unpickling one string is far faster than 10^4)."""
    items = [str(x) for x in items]
    if any(_SEP in x for x in items):
        return items
    return str(len(items)) + _SEP + _SEP.join(items)


def _unpack(packed: str | list[str]) -> list[str]:
    if isinstance(packed, list):
        return packed
    n, _, rest = packed.partition(_SEP)
    return rest.split(_SEP) if int(n) else []


def source_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    h = hashlib.sha256()
    for q in sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")):
        h.update(str(q.relative_to(p)).encode())
        h.update(file_sha256(q).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _reader_fingerprint() -> str:
    """Hash of the reader / check sources: a changed reader never reuses a stale cache."""
    import matgen.crystal

    h = hashlib.sha256()
    folder = Path(matgen.crystal.__file__).parent
    for f in sorted(folder.glob("*.py")):  # every reader, writer and check of the crystal layer
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _log_errors(label: str, errors: Sequence[EntryProblem], total: int) -> None:
    if not errors:
        return
    excluded = sum(e.excluded for e in errors)
    note = f" ({excluded} of them over max_atoms)" if excluded else ""
    log.warning("%s: skipped %d of %d entries%s", label, len(errors), total, note)
    for e in errors[:10]:
        log.warning("  %s", e)
    if len(errors) > 10:
        log.warning("  ... %d more (see dataset.errors)", len(errors) - 10)
    for e in errors[10:]:
        log.debug("  %s", e)


def load_dataset(
    name_or_path: str | os.PathLike,
    split: str = "train",
    *,
    max_atoms: int | None = None,
    min_distance: float = 0.5,
    reduce: str | None = None,
    data_dir: str | os.PathLike | None = None,
    cache: bool = True,
    allow_download: bool = True,
    workers: int | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> CrystalDataset:
    """Load a registered dataset (``mp20``, ``perov5``, ``carbon24``, ``mpts52``) or a path.

    Resolution: see :func:`~matgen.data.resolve_source`. The processed tensors are cached in
    ``<cache>/processed/`` under a key made of the source's sha256 and the processing options,
    so a second load skips parsing and a changed file is re-read. Unusable entries are skipped,
    counted in ``dataset.errors`` and logged; a NaN label is kept as a missing label (counted
    in ``dataset.nan_labels``).

    Args:
        name_or_path: registry name or a CSV / CIF / extxyz file or folder.
        split: ``train``, ``val`` or ``test`` (registry names and folders holding split files).
        max_atoms: skip crystals with more atoms per cell.
        min_distance: skip crystals with atoms closer than this (Å, periodic images included).
        reduce: ``'niggli'`` or ``'primitive'`` to reduce each cell on load, else None.
        data_dir: data root to look in before ``MATGEN_DATA_DIR``.
        cache: read/write the processed cache.
        allow_download: download a registered dataset that is not found locally.
        workers: parsing processes on a cache miss.
        dtype: float dtype of coordinates, lattices and properties.
        progress: ``progress(done, total)`` callback while parsing.
    """
    if reduce not in (None, "niggli", "primitive"):
        raise ValueError(f"reduce must be None, 'niggli' or 'primitive', got {reduce!r}")
    src = resolve_source(name_or_path, split, data_dir=data_dir, allow_download=allow_download)
    name = str(name_or_path) if not Path(name_or_path).exists() else src.stem.split(".")[0]
    options = ValidationOptions(max_atoms=max_atoms, min_distance=min_distance)
    sha = source_sha256(src)
    key_src = json.dumps(
        {
            "v": CACHE_VERSION,
            "sha256": sha,
            "max_atoms": max_atoms,
            "min_distance": min_distance,
            "min_volume_per_atom": options.min_volume_per_atom,
            "max_z": options.max_z,
            "reduce": reduce,
            "code": _reader_fingerprint(),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    cpath = cache_dir() / "processed" / f"{sha[:16]}-{key}.pt"
    meta = {"name": name, "split": split, "source": str(src)}
    if cache and cpath.is_file():
        try:
            ds = CrystalDataset.load(cpath, dtype=dtype, **meta)
            log.info("%s: loaded %d crystals from cache %s", src, len(ds), cpath)
            _log_errors(str(src), ds.errors, ds.num_entries)
            return ds
        except Exception as exc:  # noqa: BLE001 - a corrupt or old cache file: rebuild it
            log.warning("ignoring unreadable cache %s (%s)", cpath, exc)
    result = read_crystals(
        src, options=options, reduce=reduce, workers=workers, progress=progress, dtype=dtype
    )
    ds = CrystalDataset.from_read_result(result, sha256=sha, **meta)
    _log_errors(str(src), ds.errors, ds.num_entries)
    if cache:
        try:
            ds.save(cpath)
        except OSError as exc:
            log.warning("could not write cache %s (%s)", cpath, exc)
    return ds
