"""Cheap candidate features: composition statistics and simple structure descriptors.

These are the inputs of the acquisition models. They cost microseconds per crystal, so a pool of
tens of thousands of candidates is featurised in seconds and the result can be cached.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from matgen.crystal import CrystalBatch

#: Element properties used by :func:`composition_features` (in this order).
ELEMENT_PROPERTIES: tuple[str, ...] = (
    "Z",
    "X",
    "row",
    "group",
    "atomic_radius",
    "atomic_mass",
    "mendeleev_no",
    "valence",
)


@lru_cache(maxsize=1)
def _element_table() -> np.ndarray:
    """``(MAX_Z + 1, P)`` table of element properties (NaN filled with the column mean)."""
    from pymatgen.core import Element

    rows = np.full((120, len(ELEMENT_PROPERTIES)), np.nan)
    with warnings.catch_warnings():  # pymatgen warns about noble gases without X: NaN is fine
        warnings.simplefilter("ignore")
        _fill(rows, Element)
    col_mean = np.nanmean(rows[1:104], axis=0)
    idx = np.where(np.isnan(rows))
    rows[idx] = np.take(col_mean, idx[1])
    return rows


def _fill(rows: np.ndarray, Element) -> None:
    for z in range(1, 104):
        el = Element.from_Z(z)
        vals = []
        for p in ELEMENT_PROPERTIES:
            if p == "valence":
                try:
                    v = float(sum(el.valence))
                except Exception:  # noqa: BLE001 - pymatgen raises for ambiguous shells
                    v = float("nan")
            else:
                try:
                    v = float(getattr(el, p))
                except Exception:  # noqa: BLE001
                    v = float("nan")
            vals.append(v)
        rows[z] = vals


def composition_features(compositions: Sequence[dict[int, float]]) -> torch.Tensor:
    """Fraction-weighted statistics of element properties.

    Args:
        compositions: one ``{Z: amount}`` mapping per candidate (amounts need not be normalised).

    Returns:
        ``(B, 4 * P + 2)`` float64: for each of the P :data:`ELEMENT_PROPERTIES` the weighted
        mean, weighted standard deviation, minimum and maximum, then the number of elements and
        the L2 norm of the fractions.
    """
    table = _element_table()
    out = np.zeros((len(compositions), 4 * table.shape[1] + 2))
    for i, comp in enumerate(compositions):
        zs = np.fromiter(comp.keys(), dtype=int)
        w = np.fromiter(comp.values(), dtype=float)
        w = w / w.sum()
        p = table[zs]
        mean = w @ p
        std = np.sqrt(np.maximum(w @ (p - mean) ** 2, 0.0))
        out[i] = np.concatenate([mean, std, p.min(0), p.max(0), [len(zs), np.linalg.norm(w)]])
    return torch.as_tensor(out)


def batch_compositions(batch: CrystalBatch) -> list[dict[int, float]]:
    """``{Z: count}`` per crystal of a :class:`~matgen.crystal.CrystalBatch`."""
    z = batch.atomic_numbers.cpu().numpy()
    ptr = batch.ptr.tolist()
    out = []
    for i in range(batch.num_crystals):
        vals, counts = np.unique(z[ptr[i] : ptr[i + 1]], return_counts=True)
        out.append({int(a): float(c) for a, c in zip(vals, counts, strict=True)})
    return out


def cell_features(
    compositions: Sequence[dict[int, float]], volumes: Sequence[float]
) -> torch.Tensor:
    """Simple cell descriptors from the cell's atom counts and volume.

    Args:
        compositions: ``{Z: count in the cell}`` per candidate.
        volumes: cell volumes in Å^3.

    Returns:
        ``(B, 4)`` float64: volume per atom (Å^3), log number of atoms in the cell, packing
        ratio (sum of atomic-radius sphere volumes over the cell volume) and mass density
        (g/cm^3).
    """
    table = _element_table()
    r_col = ELEMENT_PROPERTIES.index("atomic_radius")
    m_col = ELEMENT_PROPERTIES.index("atomic_mass")
    out = np.zeros((len(compositions), 4))
    for i, (comp, vol) in enumerate(zip(compositions, volumes, strict=True)):
        zs = np.fromiter(comp.keys(), dtype=int)
        n = np.fromiter(comp.values(), dtype=float)
        natoms = n.sum()
        r3 = float(n @ table[zs, r_col] ** 3)
        mass = float(n @ table[zs, m_col])
        out[i] = [vol / natoms, np.log(natoms), 4.0 / 3.0 * np.pi * r3 / vol,
                  mass / vol * 1.66053906660]  # amu/Å^3 -> g/cm^3
    return torch.as_tensor(out)


def structure_features(batch: CrystalBatch) -> torch.Tensor:
    """:func:`cell_features` of every crystal of ``batch``: ``(B, 4)`` float64."""
    vols = batch.to(dtype=torch.float64).volume.tolist()
    return cell_features(batch_compositions(batch), vols)


def crystal_features(batch: CrystalBatch) -> torch.Tensor:
    """Composition and structure features of every crystal in ``batch``: ``(B, 4P + 6)``."""
    comp = composition_features(batch_compositions(batch))
    return torch.cat([comp, structure_features(batch)], dim=-1)
