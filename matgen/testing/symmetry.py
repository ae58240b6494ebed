"""The symmetry checker every denoiser and surrogate runs through (rotations, reflections,
permutations, translations, lattice changes of basis).

A model ``fn(batch, t) -> output`` is run on a batch and on transformed copies of it; the
outputs must transform as their kind says. Output fields are read by name from an object with
attributes (e.g. :class:`matgen.nn.DenoiserOutput`) or a dict; each field has a kind:

=====================  ==========================================  ==========================
kind                   rotation ``L -> L R^T`` (frac unchanged)    basis ``L -> M L``,
                                                                   ``f -> f M^-1 mod 1``
=====================  ==========================================  ==========================
``frac_score``  (N,3)  unchanged                                   ``s -> s M^T``
``lattice_rows``(B,3,3)``X -> X R^T``                              ``X -> M X``
``cart_vector`` (N,3)  ``v -> v R^T``                              unchanged
``cart_tensor`` (B,3,3)``T -> R T R^T``                            unchanged
``atom_invariant``     unchanged                                   unchanged
``crystal_invariant``  unchanged                                   unchanged
=====================  ==========================================  ==========================

Per-atom kinds are permuted with the atoms; all kinds are unchanged by fractional translations.
Default kinds: ``coord`` frac_score, ``lattice`` lattice_rows, ``type_logits`` atom_invariant,
``forces`` cart_vector, ``stress`` cart_tensor, ``energy`` crystal_invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from matgen.crystal import CrystalBatch

DEFAULT_KINDS: dict[str, str] = {
    "coord": "frac_score",
    "lattice": "lattice_rows",
    "type_logits": "atom_invariant",
    "forces": "cart_vector",
    "stress": "cart_tensor",
    "energy": "crystal_invariant",
}
PER_ATOM = {"frac_score", "cart_vector", "atom_invariant"}


def random_rotation(generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """A uniformly random proper rotation ``(3, 3)``."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_unimodular(
    generator: torch.Generator | None = None, dtype=torch.float64, shears: int = 4
) -> torch.Tensor:
    """A random integer matrix with determinant +1 (product of elementary shears), ``(3, 3)``."""
    m = torch.eye(3, dtype=dtype)
    for _ in range(shears):
        i, j = torch.randperm(3, generator=generator)[:2].tolist()
        e = torch.eye(3, dtype=dtype)
        e[i, j] = float(torch.randint(-1, 2, (1,), generator=generator).item() or 1)
        m = e @ m
    return m


def random_crystals(
    num_atoms: Sequence[int],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    volume_per_atom: float = 15.0,
) -> CrystalBatch:
    """Random crystals with sane (well-conditioned, right-handed) cells.

    Args:
        num_atoms: atoms per crystal, e.g. ``[1, 4, 52]``.
        generator: RNG.
        dtype: float dtype.
        volume_per_atom: target volume per atom in Å^3.
    """
    lats = []
    for n in num_atoms:
        while True:
            a = torch.eye(3, dtype=dtype) + 0.25 * torch.randn(
                3, 3, generator=generator, dtype=dtype
            )
            det = torch.linalg.det(a)
            if det > 0.3:
                break
        lats.append(a * ((n * volume_per_atom) / det) ** (1.0 / 3.0))
    na = torch.as_tensor(list(num_atoms), dtype=torch.long)
    n_total = int(na.sum())
    return CrystalBatch(
        atomic_numbers=torch.randint(1, 84, (n_total,), generator=generator),
        frac_coords=torch.rand(n_total, 3, generator=generator, dtype=dtype),
        lattice=torch.stack(lats),
        num_atoms=na,
    )


def _fields(out: Any, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
    res = {}
    for name in kinds:
        v = out.get(name) if isinstance(out, dict) else getattr(out, name, None)
        if isinstance(v, torch.Tensor):
            res[name] = v.detach()
    if not res:
        raise ValueError(f"output has none of the fields {sorted(kinds)}")
    return res


def _replace(batch: CrystalBatch, **kw) -> CrystalBatch:
    d = {
        "atomic_numbers": batch.atomic_numbers,
        "frac_coords": batch.frac_coords,
        "lattice": batch.lattice,
        "num_atoms": batch.num_atoms,
        "properties": dict(batch.properties),
        "ids": list(batch.ids),
    }
    d.update(kw)
    return CrystalBatch(**d)


def _wrap(f: torch.Tensor) -> torch.Tensor:
    y = torch.remainder(f, 1.0)
    return torch.where(y >= 1.0, torch.zeros_like(y), y)


def _err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    worst = 0.0
    for k, ref in a.items():
        scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
        if ref.numel():
            worst = max(worst, float((ref - b[k]).abs().max()) / scale)
    return worst


def check_symmetries(
    fn: Callable[[CrystalBatch, torch.Tensor], Any],
    batch: CrystalBatch,
    t: torch.Tensor | None = None,
    kinds: dict[str, str] | None = None,
    generator: torch.Generator | None = None,
    symmetries: Sequence[str] = ("rotation", "permutation", "translation", "basis_change"),
) -> dict[str, float]:
    """Largest violation of each symmetry.

    Args:
        fn: ``fn(batch, t) -> output`` (a denoiser; wrap others in a lambda).
        batch: crystals to test on (use float64 for round-off-level errors).
        t: ``(B,)`` times passed to ``fn``; random in ``[0, 1]`` if None.
        kinds: ``{field: kind}`` of the outputs to check (see the module docstring); defaults
            to :data:`DEFAULT_KINDS` (fields absent from the output are skipped).
        generator: RNG for the random transformations.
        symmetries: which of ``rotation``, ``reflection``, ``permutation``, ``translation``,
            ``basis_change`` to check.

    Returns:
        ``{symmetry: error}`` where error is the max over fields of
        ``max|expected - actual| / max(1, max|reference output|)``.
    """
    kinds = dict(DEFAULT_KINDS if kinds is None else kinds)
    b = batch.num_crystals
    dtype = batch.lattice.dtype
    if t is None:
        t = torch.rand(b, generator=generator, dtype=dtype).to(batch.device)
    ref = _fields(fn(batch, t), kinds)
    kinds = {k: kinds[k] for k in ref}
    bidx = batch.batch
    results: dict[str, float] = {}

    for sym in symmetries:
        if sym in ("rotation", "reflection"):
            r = random_rotation(generator, dtype).to(batch.device)
            if sym == "reflection":
                r = r @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype, device=r.device))
            new = _replace(batch, lattice=batch.lattice @ r.T)
            exp = {}
            for k, v in ref.items():
                kind = kinds[k]
                if kind == "lattice_rows" or kind == "cart_vector":
                    exp[k] = v @ r.T
                elif kind == "cart_tensor":
                    exp[k] = r @ v @ r.T
                else:
                    exp[k] = v
            results[sym] = _err(exp, _fields(fn(new, t), kinds))
        elif sym == "permutation":
            perm = torch.cat(
                [
                    s + torch.randperm(int(n), generator=generator)
                    for s, n in zip(batch.ptr[:-1].tolist(), batch.num_atoms.tolist(), strict=True)
                ]
            ).to(batch.device)
            new = _replace(
                batch,
                atomic_numbers=batch.atomic_numbers[perm],
                frac_coords=batch.frac_coords[perm],
            )
            exp = {k: (v[perm] if kinds[k] in PER_ATOM else v) for k, v in ref.items()}
            results[sym] = _err(exp, _fields(fn(new, t), kinds))
        elif sym == "translation":
            shift = torch.rand(b, 3, generator=generator, dtype=dtype).to(batch.device)
            new = _replace(batch, frac_coords=_wrap(batch.frac_coords + shift[bidx]))
            results[sym] = _err(ref, _fields(fn(new, t), kinds))
        elif sym == "basis_change":
            m = torch.stack([random_unimodular(generator, dtype) for _ in range(b)])
            m = m.to(batch.device)
            minv = torch.linalg.inv(m)
            f_new = _wrap(torch.einsum("ni,nij->nj", batch.frac_coords, minv[bidx]))
            new = _replace(batch, lattice=m @ batch.lattice, frac_coords=f_new)
            exp = {}
            for k, v in ref.items():
                kind = kinds[k]
                if kind == "frac_score":
                    exp[k] = torch.einsum("ni,nji->nj", v, m[bidx])
                elif kind == "lattice_rows":
                    exp[k] = m @ v
                else:
                    exp[k] = v
            results[sym] = _err(exp, _fields(fn(new, t), kinds))
        else:
            raise ValueError(f"unknown symmetry {sym!r}")
    return results
