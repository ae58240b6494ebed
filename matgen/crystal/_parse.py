"""Parsing and checking entries (in worker processes for large inputs), Niggli reduction.

Each raw entry is parsed (pymatgen for CIF text; arrays as they are), checked by
:func:`~matgen.crystal.check_crystal` and the label checks, and either kept or reported.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from matgen.crystal._batch import CrystalBatch
from matgen.crystal._cif import nonfinite_field, structure_from_cif, structure_to_arrays
from matgen.crystal._entries import (
    EntryProblem,
    RawEntry,
    ReadResult,
    Reduction,
    one_line,
)
from matgen.crystal._validate import (
    ValidationOptions,
    check_crystal,
    check_labels,
    over_max_atoms,
)


def reduce_arrays(arrays, mode: Reduction):
    from pymatgen.core import Lattice, Structure

    z, f, lat = arrays
    s = Structure(Lattice(lat), z.tolist(), f)
    if mode == "primitive":
        s = s.get_primitive_structure()
    s = s.get_reduced_structure("niggli")
    return (
        np.asarray(s.atomic_numbers, dtype=np.int64),
        np.asarray(s.frac_coords),
        s.lattice.matrix,
    )


def _formula(z: np.ndarray) -> str:
    from pymatgen.core import Composition

    from matgen.crystal._validate import symbol

    vals, counts = np.unique(z, return_counts=True)
    return Composition({symbol(int(v)): int(c) for v, c in zip(vals, counts)}).reduced_formula


def _process_one(item: tuple[str | None, Any, ValidationOptions, Reduction]):
    """Parse + check one entry (runs in worker processes). Returns ('ok', arrays, formula),
    ('err', reason), or ('skip', reason) for a crystal over ``options.max_atoms`` that passed
    the checks before that one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's notes; problems are reported as reasons
        return _process_one_inner(item)


def _process_one_inner(item):
    cif, arrays, options, reduce = item
    try:
        if cif is not None:
            s = structure_from_cif(cif)
            if isinstance(s, str):
                return ("err", s)
            arrays = structure_to_arrays(s)
            if isinstance(arrays, str):
                return ("err", arrays)
            lat = arrays[2]
            if not np.all(np.isfinite(lat)) or np.linalg.det(lat) <= 0:
                # lattices built from CIF cell parameters are right-handed unless the angles
                # are impossible (e.g. alpha > beta + gamma, or 0 / 180 degrees)
                return ("err", nonfinite_field(cif) or "invalid cell angles (no real cell)")
        z, f, lat = arrays
        reason = check_crystal(z, f, lat, options)
        if reason is not None:
            return ("skip" if reason == over_max_atoms(len(z), options) else "err", reason)
        if reduce is not None:
            z, f, lat = reduce_arrays((z, f, lat), reduce)
        f = np.mod(f, 1.0)
        f[f >= 1.0] -= 1.0
        return ("ok", (z, f, np.asarray(lat, float)), _formula(z))
    except Exception as exc:  # noqa: BLE001 - last-resort guard: bad data must never surface as a traceback
        return ("err", f"cannot use this entry: {type(exc).__name__}: {one_line(str(exc))}")


def default_workers() -> int:
    """Worker processes for parsing: ``MATGEN_NUM_WORKERS`` or the CPUs this process may use."""
    env = os.environ.get("MATGEN_NUM_WORKERS", "").strip()
    if env.isdigit():
        return max(1, int(env))
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _run_all(items: list, workers: int, progress: Callable[[int, int], None] | None) -> list:
    n = len(items)
    if workers <= 1 or n < 256:
        out = []
        for i, it in enumerate(items):
            out.append(_process_one(it))
            if progress is not None and (i % 256 == 0 or i == n - 1):
                progress(i + 1, n)
        return out
    from matgen._pool import process_pool

    out = []
    with process_pool(workers) as ex:
        for i, res in enumerate(ex.map(_process_one, items, chunksize=64)):
            out.append(res)
            if progress is not None and (i % 256 == 0 or i == n - 1):
                progress(i + 1, n)
    return out


def collect_entries(
    raws: list[RawEntry],
    options: ValidationOptions,
    reduce: Reduction,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    dtype: torch.dtype,
    ignored: list[str] | None = None,
) -> ReadResult:
    """Parse and check the raw entries; errors keep the input order."""
    errs: dict[int, EntryProblem] = {}
    first: dict[str, str] = {}  # duplicate ids: the first occurrence wins
    todo: list[int] = []
    for k, r in enumerate(raws):
        if r.error is not None:
            errs[k] = EntryProblem(r.name, r.error)
            continue
        if r.id in first:
            errs[k] = EntryProblem(r.name, f"duplicate id {r.id!r} (first seen at {first[r.id]})")
            continue
        first[r.id] = r.name
        reason, _ = check_labels(r.labels, options)
        if reason is not None:
            errs[k] = EntryProblem(r.name, reason)
            continue
        todo.append(k)
    results = _run_all(
        [(raws[k].cif, raws[k].arrays, options, reduce) for k in todo],
        workers if workers is not None else default_workers(),
        progress,
    )
    good: list[tuple[RawEntry, tuple, str]] = []
    for k, res in zip(todo, results):
        if res[0] != "ok":
            errs[k] = EntryProblem(raws[k].name, res[1], excluded=res[0] == "skip")
        else:
            good.append((raws[k], res[1], res[2]))
    prop_names = list(dict.fromkeys(key for r, _, _ in good for key in r.labels))
    meta_names = list(dict.fromkeys(key for r, _, _ in good for key in r.meta))
    props = {key: [r.labels.get(key, float("nan")) for r, _, _ in good] for key in prop_names}
    meta = {key: [r.meta.get(key, "") for r, _, _ in good] for key in meta_names}
    batch = CrystalBatch._from_arrays(
        [a[0] for _, a, _ in good],
        [a[1] for _, a, _ in good],
        [a[2] for _, a, _ in good],
        [len(a[0]) for _, a, _ in good],
        [r.id for r, _, _ in good],
        props,
        dtype,
    )
    nan_labels = {key: int(np.isnan(np.asarray(v, float)).sum()) for key, v in props.items()}
    return ReadResult(
        batch=batch,
        errors=[errs[k] for k in sorted(errs)],
        num_entries=len(raws),
        metadata=meta,
        formulas=[f for _, _, f in good],
        entries=[r.name for r, _, _ in good],
        nan_labels={key: v for key, v in nan_labels.items() if v},
        ignored_files=ignored or [],
    )


def reduce_batch(batch: CrystalBatch, mode: Literal["niggli", "primitive"]) -> CrystalBatch:
    """Niggli-reduce (or take the primitive cell of, then Niggli-reduce) every crystal."""
    zs, fs, lats, nas = [], [], [], []
    ptr = batch.ptr.tolist()
    z = batch.atomic_numbers.cpu().numpy()
    f = batch.frac_coords.detach().cpu().double().numpy()
    lat = batch.lattice.detach().cpu().double().numpy()
    for i in range(batch.num_crystals):
        zi, fi, li = reduce_arrays((z[ptr[i] : ptr[i + 1]], f[ptr[i] : ptr[i + 1]], lat[i]), mode)
        fi = np.mod(fi, 1.0)
        zs.append(zi)
        fs.append(fi)
        lats.append(li)
        nas.append(len(zi))
    props = {k: v.detach().cpu().double().numpy() for k, v in batch.properties.items()}
    return CrystalBatch._from_arrays(
        zs, fs, lats, nas, batch.ids, props, batch.frac_coords.dtype
    ).to(batch.device)
