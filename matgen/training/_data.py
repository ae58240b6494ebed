"""Deterministic, resumable, shardable data order and batch prefetching."""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from matgen.crystal import CrystalBatch


class BatchSource(Protocol):
    """What the loop needs from a dataset: ``len`` and vectorised ``batch(indices)``."""

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> CrystalBatch: ...


class InMemorySource:
    """A :class:`BatchSource` over one :class:`CrystalBatch` (tests, small data)."""

    def __init__(self, crystals: CrystalBatch) -> None:
        self.crystals = crystals
        self.property_names = sorted(crystals.properties)

    def __len__(self) -> int:
        return self.crystals.num_crystals

    def batch(self, indices: Sequence[int]) -> CrystalBatch:
        return self.crystals[[int(i) for i in indices]]


def as_source(data: Any) -> BatchSource:
    """Wrap a ``CrystalBatch``; pass anything with ``__len__`` and ``batch()`` through."""
    if isinstance(data, CrystalBatch):
        return InMemorySource(data)
    if hasattr(data, "batch") and hasattr(data, "__len__"):
        return data
    raise TypeError(f"cannot train on {type(data).__name__}: need a CrystalBatch or a dataset")


class IndexStream:
    """An endless stream of dataset indices: epoch ``e`` is a permutation seeded by
    ``(seed, e)``, and epochs follow each other without gaps.

    Step ``k`` of a run with global batch ``G`` reads stream positions
    ``[start + k*G, start + (k+1)*G)`` (a batch may straddle two epochs), and rank ``r`` of
    ``W`` takes the ``r``-th contiguous ``G/W`` slice of that global batch. So the global batch
    of each step is the same for any number of ranks, and the order is a pure function of
    ``(seed, position)``: resuming needs only the position.

    Args:
        n: dataset size.
        seed: base seed.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n <= 0:
            raise ValueError("the training set is empty")
        self.n = int(n)
        self.seed = int(seed)
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        perm = self._cache.get(epoch)
        if perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g)
            if len(self._cache) > 4:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = perm
        return perm

    def take(self, position: int, count: int) -> torch.Tensor:
        """Indices at stream positions ``[position, position + count)``."""
        out = []
        while count > 0:
            epoch, off = divmod(position, self.n)
            k = min(count, self.n - off)
            out.append(self.permutation(epoch)[off : off + k])
            position += k
            count -= k
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def epoch_of(self, position: int) -> int:
        return position // self.n


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset: item ``k`` is this rank's batch of step ``first_step + k``.

    Works with a ``DataLoader`` (``batch_size=None``) and worker processes, since each item
    is a pure function of the step.
    """

    def __init__(
        self,
        source: BatchSource,
        stream: IndexStream,
        start_position: int,
        first_step: int,
        num_steps: int,
        global_batch: int,
        rank: int,
        world_size: int,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(
                f"batch_size {global_batch} is not divisible by the {world_size} ranks"
            )
        self.source = source
        self.stream = stream
        self.start_position = start_position
        self.first_step = first_step
        self.num_steps = num_steps
        self.global_batch = global_batch
        self.local = global_batch // world_size
        self.rank = rank

    def __len__(self) -> int:
        return self.num_steps

    def indices(self, k: int) -> torch.Tensor:
        pos = self.start_position + k * self.global_batch + self.rank * self.local
        return self.stream.take(pos, self.local)

    def __getitem__(self, k: int) -> CrystalBatch:
        return self.source.batch(self.indices(k).tolist())


def _identity(x):
    return x


def iterate_batches(
    steps: StepBatches, num_workers: int, pin_memory: bool = False, depth: int = 4
) -> Iterator[CrystalBatch]:
    """Yield ``steps[0], steps[1], ...`` built ahead of time.

    ``num_workers > 0`` uses a ``DataLoader`` with worker processes; ``0`` builds batches in a
    background thread (the dataset is in memory, so that is usually enough to keep a GPU fed).
    """
    if num_workers > 0:
        loader = torch.utils.data.DataLoader(
            steps,
            batch_size=None,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_identity,
            prefetch_factor=depth,
            persistent_workers=False,
        )
        for b in loader:
            yield _pin(b) if pin_memory else b
        return
    yield from _threaded(steps, pin_memory, depth)


def _pin(b: CrystalBatch) -> CrystalBatch:
    from dataclasses import replace

    return replace(
        b,
        atomic_numbers=b.atomic_numbers.pin_memory(),
        frac_coords=b.frac_coords.pin_memory(),
        lattice=b.lattice.pin_memory(),
        num_atoms=b.num_atoms.pin_memory(),
        properties={k: v.pin_memory() for k, v in b.properties.items()},
    )


def _threaded(steps: StepBatches, pin_memory: bool, depth: int) -> Iterator[CrystalBatch]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sentinel = object()

    def work() -> None:
        try:
            for k in range(len(steps)):
                if stop.is_set():
                    return
                b = steps[k]
                if pin_memory:
                    b = _pin(b)
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except Exception as e:  # noqa: BLE001  (re-raised in the consumer)
            q.put(e)
        finally:
            q.put(sentinel)

    t = threading.Thread(target=work, name="matgen-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is sentinel:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.05)


# ---------------------------------------------------------------------- dataset statistics
def dataset_stats(
    source: BatchSource,
    properties: Sequence[str],
    chunk: int = 4096,
    optional: Collection[str] = frozenset(),
) -> dict:
    """Statistics stored in checkpoint metadata.

    Args:
        source: the training data.
        properties: the condition names (columns).
        chunk: crystals read per batch.
        optional: names that may lack a column or labels (conditions inherited from an
            ``init`` checkpoint): left out of ``conditions`` instead of raising.

    Returns:
        ``num_crystals``; ``mean_volume_per_atom`` (Å^3); ``num_atoms_hist``
        {atoms per cell: count} (de novo sampling draws cell sizes from it); ``formula_units_hist`` {Z: count} with Z the number of formula
        units per cell (CSP expands a reduced formula with it); ``elements`` (sorted Z seen);
        ``conditions`` {name: {mean, std, count, min, max}} over the non-missing labels.

    Raises:
        KeyError: a (non-optional) condition is not a column of the data.
        ValueError: a (non-optional) condition has no labels.
    """
    n = len(source)
    na_hist: dict[int, int] = {}
    z_hist: dict[int, int] = {}
    elements: set[int] = set()
    vpa_sum = 0.0
    sums = {p: [0.0, 0.0, 0, math.inf, -math.inf] for p in properties}
    for lo in range(0, n, chunk):
        b = source.batch(list(range(lo, min(n, lo + chunk))))
        for p in properties:
            if p not in b.properties:
                if p in optional:
                    continue
                raise KeyError(
                    f"condition {p!r} is not a column of the training data "
                    f"(have: {sorted(b.properties)})"
                )
            v = b.properties[p].double()
            v = v[torch.isfinite(v)]
            s = sums[p]
            s[0] += float(v.sum())
            s[1] += float((v * v).sum())
            s[2] += int(v.numel())
            if v.numel():
                s[3] = min(s[3], float(v.min()))
                s[4] = max(s[4], float(v.max()))
        vpa_sum += float((b.volume.double() / b.num_atoms.double()).sum())
        ptr = b.ptr.tolist()
        z = b.atomic_numbers
        elements.update(torch.unique(z).tolist())
        for i, k in enumerate(b.num_atoms.tolist()):
            na_hist[k] = na_hist.get(k, 0) + 1
            counts = torch.bincount(z[ptr[i] : ptr[i + 1]])
            counts = counts[counts > 0].tolist()
            g = 0
            for c in counts:
                g = math.gcd(g, c)
            z_hist[g] = z_hist.get(g, 0) + 1
    cond = {}
    for p, (s1, s2, c, vmin, vmax) in sums.items():
        if c == 0:
            if p in optional:
                continue
            raise ValueError(f"condition {p!r} has no labels in the training data")
        mean = s1 / c
        var = max(0.0, s2 / c - mean * mean)
        cond[p] = {
            "mean": mean,
            "std": math.sqrt(var) if var > 0 else 1.0,
            "count": c,
            "min": vmin,
            "max": vmax,
        }
    if n == 0:
        raise ValueError("no crystals in the training data")
    return {
        "num_crystals": n,
        "mean_volume_per_atom": vpa_sum / n,
        "num_atoms_hist": {str(k): v for k, v in sorted(na_hist.items())},
        "formula_units_hist": {str(k): v for k, v in sorted(z_hist.items())},
        "elements": sorted(int(e) for e in elements),
        "conditions": cond,
    }


def file_sha256(paths: Sequence[str | Path]) -> str | None:
    """sha256 over the bytes of ``paths`` (in order); ``None`` if any is missing."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            return None
        with open(p, "rb") as fh:
            for blk in iter(lambda: fh.read(1 << 20), b""):
                h.update(blk)
    return h.hexdigest()


def content_sha256(source: BatchSource, chunk: int = 4096) -> str:
    """sha256 of the crystals themselves (Z, coordinates, lattices), when no file is known."""
    h = hashlib.sha256()
    n = len(source)
    for lo in range(0, n, chunk):
        b = source.batch(list(range(lo, min(n, lo + chunk))))
        for t in (b.num_atoms, b.atomic_numbers, b.frac_coords.double(), b.lattice.double()):
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()
