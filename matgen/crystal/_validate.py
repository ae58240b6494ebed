"""Per-crystal validity checks with one-line reasons.

Every check works on plain arrays (atomic numbers, fractional coordinates, lattice rows in Å)
so readers of any format share them. A check returns ``None`` for a usable crystal, else a
one-line human-readable reason (no traceback, no newline).

Thresholds (documented choices):
    * near-zero volume: a cell is rejected when its volume is below
      ``min_volume_per_atom`` (default 1.0 Å^3) times its number of atoms. The densest solids
      known have about 2-3 Å^3 per atom (diamond 5.7 Å^3), so 1 Å^3 per atom only catches
      broken cells. A negative determinant (left-handed lattice vectors) is rejected as a
      negative volume.
    * close contacts: two atoms (or an atom and a periodic image of itself or of another
      atom) closer than ``min_distance`` (default 0.5 Å) are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matgen.crystal._batch import MAX_Z

#: Chemical symbols indexed by Z (index 0 is the dummy 'X').
_SYMBOLS: list[str] | None = None


def covalent_radii() -> np.ndarray:
    """``(MAX_Z + 1,)`` single-bond covalent radii in Å indexed by Z (Cordero et al. 2008, via
    pymatgen's ``CovalentRadius``); index 0 (the mask / dummy) holds their mean over Z 1-94."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    out = np.zeros(MAX_Z + 1)
    for z in range(1, MAX_Z + 1):
        out[z] = CovalentRadius.radius[symbol(z)]
    out[0] = out[1:].mean()
    return out


def symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z`` (``'X'`` for 0 or unknown)."""
    global _SYMBOLS
    if _SYMBOLS is None:
        from ase.data import chemical_symbols

        _SYMBOLS = list(chemical_symbols)
    return _SYMBOLS[z] if 0 <= z < len(_SYMBOLS) else f"Z={z}"


@dataclass(frozen=True)
class ValidationOptions:
    """Thresholds of the per-crystal checks.

    Attributes:
        max_atoms: reject crystals with more atoms per cell (None: no limit).
        min_distance: smallest allowed interatomic distance in Å, periodic images included.
        min_volume_per_atom: smallest allowed cell volume per atom in Å^3.
        max_volume_per_atom: largest allowed cell volume per atom in Å^3 (None: no limit;
            the campaign rejects generated cells above 200 Å^3 per atom as not physical).
        max_z: largest supported atomic number (default ``MAX_Z`` = 94, Pu).
        allow_nan_labels: keep a crystal whose property label is NaN (a missing label,
            fine for unconditional training); when False (``matgen data validate``) a NaN
            label is reported as bad. An infinite label is always bad.
    """

    max_atoms: int | None = None
    min_distance: float = 0.5
    min_volume_per_atom: float = 1.0
    max_volume_per_atom: float | None = None
    max_z: int = MAX_Z
    allow_nan_labels: bool = True


_SHIFTS = np.array(
    [[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float
)


def _reduced_basis(lattice: np.ndarray) -> np.ndarray:
    """An LLL-reduced basis of the same lattice (rows, Å), so 27 images find the minimum."""
    from pymatgen.core import Lattice

    return np.asarray(Lattice(lattice).lll_matrix, dtype=float)


#: Above this many atoms the close-contact check uses pymatgen's neighbour list (O(n)).
_DENSE_MAX_ATOMS = 256


def min_image_distance(
    frac_coords: np.ndarray, lattice: np.ndarray, cutoff: float | None = None
) -> tuple[float, int, int]:
    """Smallest distance between atoms of a periodic crystal, images included.

    Small cells (<= 256 atoms, or ``cutoff`` None) use a dense minimum-image computation in an
    LLL-reduced basis (27 images); larger cells with a ``cutoff`` use pymatgen's neighbour
    list and only look for pairs closer than ``cutoff``.

    Args:
        frac_coords: ``(n, 3)`` fractional coordinates.
        lattice: ``(3, 3)`` lattice vectors as rows, in Å (non-singular).
        cutoff: only distances below this (Å) matter (enables the neighbour-list path).

    Returns:
        ``(distance in Å, i, j)``: the closest pair (``i == j`` when an atom is closest to its
        own periodic image, i.e. the shortest lattice vector). ``(inf, -1, -1)`` when the
        neighbour-list path finds no pair closer than ``cutoff``.
    """
    n = int(np.shape(frac_coords)[0])
    if cutoff is not None and n > _DENSE_MAX_ATOMS:
        from pymatgen.core import Lattice, Structure

        s = Structure(Lattice(lattice), ["H"] * n, np.asarray(frac_coords, float))
        centers, points, _, dist = s.get_neighbor_list(r=float(cutoff), exclude_self=True)
        if len(dist) == 0:
            return (float("inf"), -1, -1)
        k = int(np.argmin(dist))
        return (float(dist[k]), int(centers[k]), int(points[k]))
    red = _reduced_basis(lattice)
    cart = np.asarray(frac_coords, dtype=float) @ lattice
    f = cart @ np.linalg.inv(red)  # coordinates in the reduced basis
    n = f.shape[0]
    shifts_cart = _SHIFTS @ red  # (27, 3)
    nonzero = np.any(_SHIFTS != 0, axis=1)
    best = (float(np.linalg.norm(shifts_cart[nonzero], axis=1).min()), 0, 0)
    chunk = max(1, 4096 // max(n, 1))
    for start in range(0, n, chunk):
        d = f[start : start + chunk, None, :] - f[None, :, :]  # (c, n, 3)
        d -= np.round(d)
        dc = d @ red  # (c, n, 3) Cartesian minimum-image candidates
        dist = np.linalg.norm(dc[:, :, None, :] + shifts_cart[None, None], axis=-1).min(-1)
        rows = np.arange(dist.shape[0])
        dist[rows, start + rows] = np.inf  # self pairs: handled by the shortest lattice vector
        k = int(np.argmin(dist))
        i, j = divmod(k, n)
        if dist.flat[k] < best[0]:
            best = (float(dist.flat[k]), start + i, j)
    return best


def too_close(crystals, limit: float | None = None) -> list[bool]:
    """Per crystal of a (CPU) :class:`matgen.crystal.CrystalBatch`: two atoms closer than
    ``limit`` Å (default: :class:`ValidationOptions`' ``min_distance``, which scoring and
    evaluation apply), periodic images included; a singular cell counts as too close."""
    limit = ValidationOptions().min_distance if limit is None else limit
    flags, start = [], 0
    fc, lat = crystals.frac_coords.double().numpy(), crystals.lattice.double().numpy()
    for k, na in enumerate(crystals.num_atoms.tolist()):
        d = float("inf")
        if na:
            try:
                d = min_image_distance(fc[start:start + na], lat[k], cutoff=limit)[0]
            except (ValueError, ArithmeticError):  # a singular cell: not a usable structure
                d = 0.0
        flags.append(bool(d < limit))
        start += na
    return flags


def over_max_atoms(num_atoms: int, options: ValidationOptions) -> str | None:
    """The reason a crystal of ``num_atoms`` exceeds ``options.max_atoms`` (None if it does
    not): a filter the caller chose, which :func:`check_crystal` reports like bad data."""
    if options.max_atoms is not None and num_atoms > options.max_atoms:
        return f"{num_atoms} atoms per cell > max_atoms={options.max_atoms}"
    return None


def check_crystal(
    atomic_numbers: np.ndarray,
    frac_coords: np.ndarray,
    lattice: np.ndarray,
    options: ValidationOptions = ValidationOptions(),
) -> str | None:
    """Check one crystal; return None if usable, else a one-line reason.

    Args:
        atomic_numbers: ``(n,)`` integers.
        frac_coords: ``(n, 3)`` fractional coordinates.
        lattice: ``(3, 3)`` lattice vectors as rows, in Å.
        options: thresholds.
    """
    z = np.asarray(atomic_numbers)
    n = int(z.shape[0])
    if n == 0:
        return "no atoms"
    lat = np.asarray(lattice, dtype=float)
    if lat.shape != (3, 3):
        return f"lattice has shape {lat.shape}, expected (3, 3)"
    if not np.all(np.isfinite(lat)):
        return "NaN or inf in the lattice"
    fc = np.asarray(frac_coords, dtype=float)
    if not np.all(np.isfinite(fc)):
        return "NaN or inf in the atomic coordinates"
    bad = [int(x) for x in z if x < 1 or x > options.max_z]
    if bad:
        x = bad[0]
        if x < 1:
            return "unknown element (dummy species X, Z=0)"
        return f"unsupported element {symbol(x)} (Z={x} > {options.max_z})"
    over = over_max_atoms(n, options)
    if over is not None:
        return over
    vol = float(np.linalg.det(lat))
    if vol < 0 and abs(vol) >= options.min_volume_per_atom * n:
        return f"negative cell volume {vol:.3g} Å^3 (left-handed lattice vectors)"
    if abs(vol) < options.min_volume_per_atom * n:
        if vol == 0.0:
            return "zero cell volume (degenerate lattice)"
        return (
            f"near-zero cell volume {vol:.3g} Å^3 for {n} atoms "
            f"(< {options.min_volume_per_atom:g} Å^3 per atom)"
        )
    if options.max_volume_per_atom is not None and abs(vol) > options.max_volume_per_atom * n:
        return (
            f"cell volume {vol:.3g} Å^3 for {n} atoms "
            f"(> {options.max_volume_per_atom:g} Å^3 per atom)"
        )
    if options.min_distance > 0:
        d, i, j = min_image_distance(fc, lat, cutoff=options.min_distance)
        if d < options.min_distance:
            if i == j:
                return (
                    f"atom {i} ({symbol(int(z[i]))}) is {d:.3f} Å from its own periodic image "
                    f"(< {options.min_distance:g} Å)"
                )
            return (
                f"atoms {i} ({symbol(int(z[i]))}) and {j} ({symbol(int(z[j]))}) are {d:.3f} Å "
                f"apart (< {options.min_distance:g} Å, periodic images included)"
            )
    return None


def check_labels(
    labels: dict[str, float], options: ValidationOptions = ValidationOptions()
) -> tuple[str | None, list[str]]:
    """Check the property labels of one crystal.

    Returns:
        ``(reason, nan_names)``: reason is None if usable; ``nan_names`` lists properties
        whose label is NaN (missing), which is bad only when ``allow_nan_labels`` is False.
    """
    nan_names = []
    for k, v in labels.items():
        if np.isnan(v):
            nan_names.append(k)
        elif not np.isfinite(v):
            return f"inf in property {k}", nan_names
    if nan_names and not options.allow_nan_labels:
        return "NaN in property " + ", ".join(nan_names), nan_names
    return None, nan_names
