"""Chemical-substitution augmentation of the training crystals (``data.substitute``).

The default model recalls 71% of its training crystals from their composition alone against 44%
of val crystals, and matches least where it knows the chemistry
(``benchmarks/results/csp_train_val_gap_cpu.json``): it ties structures to their elements. Here a
share of the crystals, each time they are drawn, get one element replaced by another that takes
its place in known crystals: the ionic substitution statistics of Hautier et al. (Inorg. Chem.
2011), as pymatgen ships them (``SubstitutionProbability``), between ions of the same charge
(so a charge-balanced crystal stays balanced under that charge), restricted to elements of the
training set (e.g. Na -> K, Li, Rb; O -> S, Se; Ba -> Sr, Ca, Pb; Si -> Ge). The cell is
rescaled so the atoms' summed atomic-radius cubes keep their ratio to the volume; fractional
coordinates are kept. A substituted crystal is not a known material, so its property labels are
dropped (NaN: the unconditioned input).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from matgen.crystal import CrystalBatch

#: at most this many substitutes per element, the likeliest first
TOP_K = 8
#: a swap that would scale the cell's volume by more than this factor (or less than its
#: inverse) is not made: the structure would not hold (H <-> Li, the 1.5 Å radius fallback)
MAX_VOLUME_RATIO = 2.0


@functools.cache
def _statistics():
    """pymatgen's substitution statistics (loaded once: ~1 s)."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    return SubstitutionProbability()


def element_substitutes(elements: Iterable[int], top_k: int = TOP_K, min_share: float = 0.02,
                        min_total: float = 1e-3) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{Z: (substitute Zs, probabilities)}`` among ``elements``: P(b | a) proportional to
    pymatgen's substitution probability of the ions a^q -> b^q summed over the charges q both
    take (so common ions weigh as often as they occur), the ``top_k`` likeliest with at least
    ``min_share``; elements whose ions are rare in the statistics (summed probability below
    ``min_total``) or that have no substitute are absent."""
    sp = _statistics()
    charges: dict[int, dict[float, object]] = {}
    for s in sp.species:
        charges.setdefault(s.Z, {})[s.oxi_state] = s
    els = sorted({int(z) for z in elements} & set(charges))
    out = {}
    for a in els:
        cand = []
        for b in els:
            if b != a:
                w = sum(sp.prob(charges[a][q], charges[b][q])
                        for q in set(charges[a]) & set(charges[b]))
                if w > 0:
                    cand.append((w, b))
        total = sum(w for w, _ in cand)
        if total < min_total:
            continue
        cand = [(w / total, b) for w, b in sorted(cand, reverse=True)[:top_k]
                if w / total >= min_share]
        if cand:
            out[a] = (np.array([b for _, b in cand], dtype=np.int64),
                      np.array([w for w, _ in cand], dtype=np.float64))
    return out


def atomic_radii(max_z: int = 118) -> np.ndarray:
    """Empirical atomic radius (Å) per Z from pymatgen (its calculated one, else 1.5 Å)."""
    from pymatgen.core import Element

    r = np.full(max_z + 1, 1.5)
    with warnings.catch_warnings():  # pymatgen warns for each element it has no radius of
        warnings.simplefilter("ignore")
        for z in range(1, max_z + 1):
            e = Element.from_Z(z)
            v = e.atomic_radius or e.atomic_radius_calculated
            if v:
                r[z] = float(v)
    return r


class Substituted:
    """A :class:`~matgen.training.BatchSource` whose batches have a share ``prob`` of the
    crystals substituted (see the module). Deterministic: the draws of a batch depend only on
    ``seed`` and the batch's indices."""

    def __init__(self, src, prob: float, seed: int, elements: Iterable[int]) -> None:
        self.src = src
        self.prob = float(prob)
        self.seed = int(seed)
        self.table = element_substitutes(elements)
        self.radii = atomic_radii()
        self.property_names = getattr(src, "property_names", None)

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, indices: Sequence[int]) -> CrystalBatch:
        b = self.src.batch(indices)
        key = [self.seed, *(int(i) for i in indices)]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        return substitute(b, rng.random(b.num_crystals) < self.prob, rng, self.table,
                          self.radii)


def substitute(b: CrystalBatch, pick: np.ndarray, rng: np.random.Generator,
               table: dict[int, tuple[np.ndarray, np.ndarray]], radii: np.ndarray
               ) -> CrystalBatch:
    """``b`` with one element of each picked crystal swapped (all its atoms) for a substitute
    not already in that crystal, the cell rescaled; crystals with nothing to swap, or whose
    swap drawn would scale the volume beyond :data:`MAX_VOLUME_RATIO`, are kept as they are.
    Property labels of the swapped crystals become NaN. (Plain Python on the small per-crystal
    lists: numpy's per-call overhead made this 8x slower: 55 vs 7 ms per batch of 1,024.)"""
    z = b.atomic_numbers.tolist()
    counts = b.num_atoms.tolist()
    ptr = [0]
    for c in counts:
        ptr.append(ptr[-1] + c)
    r3 = (radii ** 3).tolist()
    scale = [1.0] * len(counts)
    done = [False] * len(counts)
    for i in np.flatnonzero(pick).tolist():
        lo, hi = ptr[i], ptr[i + 1]
        zi = z[lo:hi]
        present = set(zi)
        swappable = sorted(e for e in present if e in table)
        if not swappable:
            continue
        a = swappable[int(rng.integers(len(swappable)))]
        free = [(t, w) for t, w in zip(*(x.tolist() for x in table[a]), strict=True)
                if t not in present]
        if not free:
            continue
        u, new = rng.random() * sum(w for _, w in free), free[-1][0]
        for t, w in free:
            if u < w:
                new = t
                break
            u -= w
        old_r3 = sum(r3[x] for x in zi)
        ratio = (old_r3 + zi.count(a) * (r3[new] - r3[a])) / old_r3
        if not 1.0 / MAX_VOLUME_RATIO <= ratio <= MAX_VOLUME_RATIO:
            continue
        z[lo:hi] = [new if x == a else x for x in zi]
        scale[i], done[i] = ratio ** (1.0 / 3.0), True
    props = b.properties
    if any(done):
        mask = torch.tensor(done)
        props = {k: torch.where(mask, torch.full_like(v, float("nan")), v)
                 for k, v in props.items()}
    lat = b.lattice * torch.tensor(scale, dtype=b.lattice.dtype)[:, None, None]
    return CrystalBatch(atomic_numbers=torch.tensor(z, dtype=b.atomic_numbers.dtype),
                        frac_coords=b.frac_coords, lattice=lat, num_atoms=b.num_atoms,
                        properties=props, ids=list(b.ids))
