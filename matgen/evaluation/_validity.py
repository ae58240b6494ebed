"""Validity of generated crystals as CDVAE / DiffCSP define it.

A crystal is *valid* when it is both

* **constructible and structurally valid** (:func:`structure_validity`): the cell can be built
  (finite numbers, non-singular lattice, known elements), its volume is at least 0.1 Å^3, and the
  shortest distance between two distinct sites, taken over periodic images (pymatgen's
  minimum-image ``distance_matrix``), is at least 0.5 Å; and
* **compositionally valid** (:func:`smact_validity`): SMACT charge neutrality with the Pauling
  electronegativity test, where a single-element composition and an all-metal composition count
  as valid (CDVAE's ``include_alloys``).

The SMACT rule is written against smact 4's API but reproduces what CDVAE/DiffCSP computed with
smact 2.x: smact 2.x's default oxidation-state list is smact 4's ``oxidation_states_smact14``
(file ``oxidation_states.txt``; smact 4 switched the default to ICSD-24), and smact 2.x's Pauling
test raised ``TypeError`` on a missing electronegativity, which CDVAE took as a pass, whereas
smact 4 returns ``False``. Both differences are handled here explicitly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Composition, Structure

#: Distance cut-off (Å) and volume cut-off (Å^3) of CDVAE's ``structure_validity``.
MIN_DISTANCE = 0.5
MIN_VOLUME = 0.1


@cache
def _smact_element(symbol: str) -> tuple[tuple[int, ...], float | None]:
    """(smact14 oxidation states, Pauling electronegativity) of one element."""
    import smact

    el = smact.Element(symbol)
    ox = tuple(int(o) for o in (el.oxidation_states_smact14 or ()))
    eneg = el.pauling_eneg
    if eneg is not None and (isinstance(eneg, float) and math.isnan(eneg)):
        eneg = None
    return ox, eneg


@lru_cache(maxsize=1)
def _smact_metals() -> frozenset[str]:
    import smact

    return frozenset(smact.metals)


def _pauling_ok(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """Pauling test with smact 2.x semantics as CDVAE used it.

    Pairs are visited in ``itertools.combinations`` order; a cation at least as electronegative
    as an anion fails the test. A cation/anion pair with a missing electronegativity made smact
    2.x raise ``TypeError``, which CDVAE caught and treated as a pass: reproduced here.
    """
    for (ox1, en1), (ox2, en2) in itertools.combinations(zip(ox_states, enegs), 2):
        if ox1 > 0 and ox2 < 0:
            if en1 is None or en2 is None:
                return True
            if en1 >= en2:
                return False
        elif ox1 < 0 and ox2 > 0:
            if en1 is None or en2 is None:
                return True
            if en1 <= en2:
                return False
    return True


def _elements_and_counts(
    composition: Composition | Mapping[str, float] | str | Sequence[int],
) -> tuple[list[str], list[int]]:
    """Element symbols sorted by Z and integer counts reduced by their gcd."""
    from pymatgen.core import Composition, Element

    if isinstance(composition, str | Mapping) or hasattr(composition, "element_composition"):
        comp = Composition(composition)
        items = sorted(comp.element_composition.items(), key=lambda kv: kv[0].Z)
        symbols = [el.symbol for el, _ in items]
        counts = [float(n) for _, n in items]
        if any(abs(c - round(c)) > 1e-6 for c in counts):
            raise ValueError(f"non-integer composition {comp.formula!r}")
        icounts = [round(c) for c in counts]
    else:  # a sequence of atomic numbers, one per atom
        zs, cnt = np.unique(np.asarray(composition, dtype=np.int64), return_counts=True)
        symbols = [Element.from_Z(int(z)).symbol for z in zs]
        icounts = [int(c) for c in cnt]
    if not symbols:
        raise ValueError("empty composition")
    g = math.gcd(*icounts)
    return symbols, [c // g for c in icounts]


#: Names of the SMACT rule sets :func:`smact_validity` can apply.
SMACT_RULES = ("cdvae", "smact4")


def smact_validity(
    composition: Composition | Mapping[str, float] | str | Sequence[int],
    use_pauling_test: bool = True,
    include_alloys: bool = True,
    rules: str = "cdvae",
) -> bool:
    """CDVAE's compositional validity (SMACT charge neutrality + Pauling test).

    ``rules="smact4"`` instead calls smact 4's own ``smact.screening.smact_validity`` with its
    defaults (ICSD-24 oxidation states; a missing electronegativity fails), for comparison
    with scripts written against smact 4.

    Rule: counts are reduced by their gcd; a single element is valid; with ``include_alloys`` a
    composition of metals only (``smact.metals``) is valid; otherwise the composition is valid if
    some assignment of one oxidation state per element (smact14 list) is charge neutral at these
    counts and (with ``use_pauling_test``) every cation is less electronegative than every anion.

    Args:
        composition: a pymatgen ``Composition``, a formula, ``{symbol: count}``, or the atomic
            numbers of all atoms of a cell.
        use_pauling_test: apply the electronegativity test.
        include_alloys: all-metal compositions are valid.

    Returns:
        ``True`` if valid; ``False`` also for compositions SMACT cannot handle (unknown element,
        fractional counts), as DiffCSP's evaluation does.
    """
    if rules not in SMACT_RULES:
        raise ValueError(f"unknown SMACT rules {rules!r}; known: {SMACT_RULES}")
    try:
        symbols, counts = _elements_and_counts(composition)
        if rules == "smact4":
            return _smact4_validity(symbols, counts, use_pauling_test, include_alloys)
        if len(symbols) == 1:
            return True
        if include_alloys and all(s in _smact_metals() for s in symbols):
            return True
        data = [_smact_element(s) for s in symbols]
    except (ValueError, KeyError, TypeError):
        return False
    ox_lists = [ox for ox, _ in data]
    enegs = [en for _, en in data]
    for ox_states in itertools.product(*ox_lists):
        if sum(o * c for o, c in zip(ox_states, counts)) != 0:
            continue
        if not use_pauling_test or _pauling_ok(ox_states, enegs):
            return True
    return False


def _smact4_validity(
    symbols: list[str], counts: list[int], use_pauling_test: bool, include_alloys: bool
) -> bool:
    import warnings

    from pymatgen.core import Composition
    from smact.screening import smact_validity as _sv

    comp = Composition(dict(zip(symbols, counts, strict=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(_sv(comp, use_pauling_test=use_pauling_test, include_alloys=include_alloys))
        except Exception:  # noqa: BLE001 - as DiffCSP: a failing check is "invalid"
            return False


def structure_validity(
    structure: Structure, cutoff: float = MIN_DISTANCE, min_volume: float = MIN_VOLUME
) -> bool:
    """CDVAE's structural validity.

    Args:
        structure: an ordered pymatgen structure.
        cutoff: smallest allowed distance (Å) between two distinct sites, over periodic images.
        min_volume: smallest allowed cell volume (Å^3).

    Returns:
        ``True`` if every inter-site distance is ``>= cutoff`` and the volume ``>= min_volume``.
    """
    if not structure.volume >= min_volume:
        return False
    if len(structure) < 2:
        return True
    dm = np.array(structure.distance_matrix, dtype=float)
    off = dm[~np.eye(len(dm), dtype=bool)]
    return bool(np.all(np.isfinite(off)) and off.min() >= cutoff)


# ----------------------------------------------------------------------------- construction
#: A crystal as plain, cheaply picklable arrays: (lattice rows (3,3) Å, Z (n,), positions (n,3),
#: positions_are_cartesian).
CrystalArrays = tuple[list[list[float]], list[int], list[list[float]], bool]


def arrays_from_atoms(atoms) -> CrystalArrays:
    """Plain arrays from an ASE ``Atoms`` (Cartesian positions, so a singular cell is kept)."""
    return (
        np.asarray(atoms.cell[:], dtype=float).tolist(),
        [int(z) for z in atoms.numbers],
        np.asarray(atoms.positions, dtype=float).tolist(),
        True,
    )


def arrays_from_structure(structure: Structure) -> CrystalArrays:
    """Plain arrays from a pymatgen ``Structure`` (fractional positions)."""
    return (
        structure.lattice.matrix.tolist(),
        [int(site.specie.Z) for site in structure],
        structure.frac_coords.tolist(),
        False,
    )


def build_structure(arrays: CrystalArrays) -> tuple[Structure | None, str]:
    """Build a pymatgen structure as CDVAE's ``Crystal.get_structure`` would accept it.

    Returns:
        ``(structure, "")`` or ``(None, reason)`` where reason is one of ``nan_value``,
        ``no_atoms``, ``singular_lattice``, ``construction_raises_exception``,
        ``unrealistically_small_lattice``.
    """
    from pymatgen.core import Lattice, Structure

    lat, zs, pos, cart = arrays
    lat_a = np.asarray(lat, dtype=float)
    pos_a = np.asarray(pos, dtype=float).reshape(-1, 3)
    if not (np.all(np.isfinite(lat_a)) and np.all(np.isfinite(pos_a))):
        return None, "nan_value"
    if len(zs) == 0:
        return None, "no_atoms"
    if abs(np.linalg.det(lat_a)) < 1e-12:
        return None, "singular_lattice"
    try:
        s = Structure(Lattice(lat_a), [int(z) for z in zs], pos_a, coords_are_cartesian=cart)
    except Exception:  # noqa: BLE001 - any failure means "not constructible", as in CDVAE
        return None, "construction_raises_exception"
    if s.volume < MIN_VOLUME:
        return None, "unrealistically_small_lattice"
    return s, ""


@dataclass(frozen=True)
class CrystalValidity:
    """Validity flags of one crystal.

    Attributes:
        constructed: the cell could be built (see :func:`build_structure`).
        comp_valid: :func:`smact_validity` of its composition.
        struct_valid: constructed and :func:`structure_validity`.
        reason: empty if valid, else the first failed check.
    """

    constructed: bool
    comp_valid: bool
    struct_valid: bool
    reason: str

    @property
    def valid(self) -> bool:
        return self.comp_valid and self.struct_valid


def check_validity(
    structure: Structure | None,
    zs: Sequence[int] | None = None,
    build_reason: str = "",
    smact_rules: str = "cdvae",
) -> CrystalValidity:
    """Validity of a built structure (or of a failed build, from its atomic numbers ``zs``)."""
    if structure is None:
        comp_valid = smact_validity(list(zs), rules=smact_rules) if zs else False
        return CrystalValidity(False, comp_valid, False, build_reason or "not_constructed")
    comp_valid = smact_validity([site.specie.Z for site in structure], rules=smact_rules)
    struct_valid = structure_validity(structure)
    reason = ""
    if not struct_valid:
        reason = "atoms_too_close" if structure.volume >= MIN_VOLUME else "small_volume"
    elif not comp_valid:
        reason = "smact_invalid"
    return CrystalValidity(True, comp_valid, struct_valid, reason)
