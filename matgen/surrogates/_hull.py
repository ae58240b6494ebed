"""Energy above the convex hull from a reference set of compositions.

The hull is built in formation-energy space, one pymatgen ``PhaseDiagram`` per chemical system,
lazily, and cached in memory and on disk. Total energies map to formation energies through
elemental reference energies: ``e_form = E/atom - sum_i x_i * mu_i``, so for any composition and
total energy per atom (from an MLIP) the energy above the hull is ``e_form - hull(composition)``
(signed: negative means below the reference hull, i.e. a new stable phase).

Two references:
* :meth:`ConvexHull.from_mp` -- Matbench's ``mp_e_form`` formation energies of 132,752 MP
  compositions (legacy MP corrections; good to a few tens of meV/atom), read from
  ``$MATGEN_DATA_DIR/hull_refs`` or, when that is missing, from the pruned copy shipped in
  ``matgen/assets/hull``; elemental references: the 89 MP elemental reference entries
  (``elemental="mp"``), CHGNet's own energies of the elemental ground states
  (``elemental="chgnet"``, see :mod:`matgen.surrogates._elemental`), or -- the default -- MP's
  for compounds and CHGNet's for single-element compositions (``"chgnet-elements"``);
* :meth:`ConvexHull.self_consistent` -- the MLIP's own energies of reference structures.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from matgen._files import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.core import Composition, Structure

    from matgen.surrogates._mlip import MLIP
    from matgen.surrogates._relax import RelaxConfig

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "hull"
FORMATION_FILE = "mp_e_form_compositions.csv.gz"
ELEMENTAL_FILE = "2023-02-07-mp-elemental-reference-entries.json.gz"
_ELEMENT_RE = re.compile(r"[A-Z][a-z]?")


_MP_HULLS: dict[tuple[str, str], ConvexHull] = {}  # one per process and source


def default_cache_dir() -> Path:
    """``hull`` in matgen's cache folder (:func:`matgen.data.cache_dir`)."""
    from matgen.data import cache_dir

    return cache_dir() / "hull"


def _chemsys(elements: Iterable[str]) -> str:
    return "-".join(sorted(set(elements)))


class ConvexHull:
    """A formation-energy convex hull over reference compositions, per chemical system.

    Args:
        entries: ``(formula, formation energy eV/atom)`` pairs; elements are implicit at 0.
        elemental_energies: ``{element: reference total energy, eV/atom}``.
        cache_dir: on-disk cache for the per-system hull vertices (``None``: memory only).
        name: a label written into the cache key.
        elemental_phase_energies: optional ``{element: eV/atom}`` used instead of
            ``elemental_energies`` for single-element compositions only (an elemental
            polymorph is then measured against the same MLIP's elemental ground state, while
            compounds keep ``elemental_energies``).
    """

    def __init__(
        self,
        entries: Iterable[tuple[str, float]],
        elemental_energies: dict[str, float],
        cache_dir: Path | str | None = None,
        name: str = "custom",
        elemental_phase_energies: dict[str, float] | None = None,
    ) -> None:
        self._by_sys: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for formula, e in entries:
            e = float(e)
            if not e < 0:  # NaN, or e_form >= 0: never on the hull
                continue
            els = set(_ELEMENT_RE.findall(str(formula)))
            if len(els) > 1:
                self._by_sys[_chemsys(els)].append((str(formula), e))
        self.elemental_energies = {str(k): float(v) for k, v in elemental_energies.items()}
        self.elemental_phase_energies = {
            str(k): float(v) for k, v in (elemental_phase_energies or {}).items()}
        digest = hashlib.sha1(
            json.dumps(
                [sorted((f, round(e, 6)) for v in self._by_sys.values() for f, e in v),
                 sorted(self.elemental_energies.items())]
            ).encode()
        ).hexdigest()[:12]
        self.name = name
        self.key = f"{name}-{digest}"
        self.version = self.key  # names the reference in campaign records
        self.cache_dir = Path(cache_dir) / self.key if cache_dir is not None else None
        self._pd: dict[str, PhaseDiagram] = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_mp(
        cls,
        data_dir: Path | str | None = None,
        cache_dir: Path | str | None = "default",
        elemental: str | dict[str, float] = "chgnet-elements",
    ) -> ConvexHull:
        """The MP reference hull (``hull_refs`` of the shared datasets, else the shipped copy).

        The hull's shape is MP's formation-energy hull; ``elemental`` picks the elemental
        reference energies that put an MLIP's total energies on it (total-energy hull per atom
        = formation-energy hull + sum_i x_i * mu_i). Built once per process, source and
        ``elemental`` choice (later calls return the same object).

        Args:
            data_dir: folder holding ``hull_refs/`` (default ``$MATGEN_DATA_DIR``).
            cache_dir: on-disk cache (``"default"``: :func:`default_cache_dir`; ``None``: none).
            elemental: ``"chgnet-elements"`` (default, for CHGNet energies: MP's references
                for compounds, CHGNet's own relaxed elemental ground states -- shipped in
                ``matgen/assets/hull/elemental_energies_chgnet.json`` -- for single-element
                compositions, so CHGNet's diamond Si or bcc Fe sit on the hull), ``"chgnet"``
                (CHGNet's elemental energies for every composition: fully MLIP-consistent, but
                measured worse on MP-20 compounds, see ``benchmarks/results/surrogates_hull_cpu
                .json``), ``"mp"`` (MP's legacy-corrected reference entries; for DFT energies
                or an MLIP without a table) or an ``{element: eV/atom}`` dict (all compositions).
        """
        cache = default_cache_dir() if cache_dir == "default" else cache_dir
        d = Path(data_dir or os.environ.get("MATGEN_DATA_DIR", "")) / "hull_refs"
        el_key = (elemental if isinstance(elemental, str)
                  else json.dumps(sorted(elemental.items())))
        key = (str(d.resolve()), str(cache), el_key)
        if key not in _MP_HULLS:
            _MP_HULLS[key] = cls._from_mp(d, cache, elemental)
        return _MP_HULLS[key]

    @classmethod
    def _from_mp(
        cls, d: Path, cache: Path | str | None, elemental: str | dict[str, float] = "mp"
    ) -> ConvexHull:
        if (d / FORMATION_FILE).exists() and (d / ELEMENTAL_FILE).exists():
            entries = _read_formation_csv(d / FORMATION_FILE)
            mu = _read_elemental_entries(d / ELEMENTAL_FILE)
        else:
            entries = _read_formation_csv(ASSET_DIR / "mp_e_form_pruned.csv.gz")
            mu = json.loads((ASSET_DIR / "elemental_energies.json").read_text())
        name, phase = "mp", None
        if isinstance(elemental, dict):
            mu = {**mu, **{str(k): float(v) for k, v in elemental.items()}}
            name = "mp-custom"
        elif elemental.endswith("-elements"):
            from matgen.surrogates._elemental import load_elemental_energies

            phase = load_elemental_energies(elemental.removesuffix("-elements"))
            name = f"mp-{elemental}"
        elif elemental != "mp":
            from matgen.surrogates._elemental import load_elemental_energies

            mu = {**mu, **load_elemental_energies(elemental)}  # MP value where none
            name = f"mp-{elemental}"
        return cls(entries, mu, cache_dir=cache, name=name, elemental_phase_energies=phase)

    @classmethod
    def self_consistent(
        cls,
        structures: Sequence[Structure],
        mlip: MLIP,
        relax_config: RelaxConfig | None = None,
        energies_per_atom: Sequence[float] | None = None,
        cache_dir: Path | str | None = None,
    ) -> ConvexHull:
        """A hull from the MLIP's own energies of reference structures.

        Elemental reference energies are the lowest MLIP energy per atom among the elemental
        structures in ``structures``; an element without one is missing from the hull (queries
        containing it give NaN).

        Args:
            structures: reference structures (e.g. a training split), elements included.
            mlip: the potential; its relaxed energies define the hull.
            relax_config: relaxation settings (``max_steps=0``: single points).
            energies_per_atom: precomputed MLIP energies (skips relaxation).
        """
        if energies_per_atom is None:
            from matgen.surrogates._relax import relax

            res = relax(list(structures), mlip, relax_config)
            energies_per_atom = [r.energy_per_atom for r in res]
        mu: dict[str, float] = {}
        totals: list[tuple[Composition, float]] = []
        for s, e in zip(structures, energies_per_atom, strict=True):
            if not math.isfinite(e):
                continue
            comp = s.composition
            if len(comp.elements) == 1:
                el = comp.elements[0].symbol
                mu[el] = min(mu.get(el, math.inf), float(e))
            else:
                totals.append((comp, float(e)))
        entries = []
        for comp, e in totals:
            if all(el.symbol in mu for el in comp.elements):
                ef = e - sum(comp.get_atomic_fraction(el) * mu[el.symbol] for el in comp.elements)
                entries.append((comp.reduced_formula, ef))
        return cls(entries, mu, cache_dir=cache_dir, name=f"sc-{mlip.name}")

    # ------------------------------------------------------------------ queries
    def phase_diagram(self, chemsys: str | Iterable[str]) -> PhaseDiagram:
        """The formation-energy ``PhaseDiagram`` of a chemical system (``"Li-Fe-O"``)."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
        from pymatgen.core import Composition

        key = chemsys if isinstance(chemsys, str) else _chemsys(chemsys)
        key = _chemsys(key.split("-"))
        if key in self._pd:
            return self._pd[key]
        els = key.split("-")
        stable = self._read_cache(key)
        if stable is None:
            cand = []
            for k in range(2, len(els) + 1):
                for sub in itertools.combinations(els, k):
                    cand.extend(self._by_sys.get("-".join(sub), ()))
            entries = [PDEntry(Composition(el), 0.0) for el in els]
            for f, e in cand:
                c = Composition(f)
                entries.append(PDEntry(c, e * c.num_atoms))
            pd = PhaseDiagram(entries)
            stable = [
                (e.composition.reduced_formula, e.energy_per_atom)
                for e in pd.stable_entries
                if len(e.composition.elements) > 1
            ]
            self._write_cache(key, stable)
        else:
            entries = [PDEntry(Composition(el), 0.0) for el in els]
            entries += [
                PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in stable
            ]
            pd = PhaseDiagram(entries)
        self._pd[key] = pd
        return pd

    def e_form_per_atom(self, composition: Composition | str, energy_per_atom: float) -> float:
        """Formation energy (eV/atom) from a total energy per atom; NaN if an element is missing."""
        from pymatgen.core import Composition

        comp = Composition(composition)
        if len(comp.elements) == 1 and comp.elements[0].symbol in self.elemental_phase_energies:
            return float(energy_per_atom) - self.elemental_phase_energies[comp.elements[0].symbol]
        try:
            ref = sum(
                comp.get_atomic_fraction(el) * self.elemental_energies[el.symbol]
                for el in comp.elements
            )
        except KeyError:
            return math.nan
        return float(energy_per_atom) - ref

    def hull_energy_per_atom(self, composition: Composition | str) -> float:
        """Formation energy of the hull at ``composition`` (eV/atom, <= 0)."""
        from pymatgen.core import Composition

        comp = Composition(composition)
        if len(comp.elements) == 1:
            return 0.0
        return float(self.phase_diagram(el.symbol for el in comp.elements)
                     .get_hull_energy_per_atom(comp))

    def e_above_hull(self, composition: Composition | str, energy_per_atom: float) -> float:
        """Signed energy above the hull, eV/atom (NaN when an element has no reference)."""
        ef = self.e_form_per_atom(composition, energy_per_atom)
        if not math.isfinite(ef):
            return math.nan
        return ef - self.hull_energy_per_atom(composition)

    def e_above_hull_many(
        self, compositions: Sequence[Composition | str], energies_per_atom: Sequence[float]
    ) -> np.ndarray:
        """Vectorised :meth:`e_above_hull` (NaN energies give NaN)."""
        out = np.full(len(compositions), np.nan)
        for i, (c, e) in enumerate(zip(compositions, energies_per_atom, strict=True)):
            if e is not None and math.isfinite(e):
                out[i] = self.e_above_hull(c, e)
        return out

    # ------------------------------------------------------------------ disk cache
    def _read_cache(self, key: str) -> list[tuple[str, float]] | None:
        if self.cache_dir is None:
            return None
        p = self.cache_dir / f"{key}.json"
        try:
            return [(f, float(e)) for f, e in json.loads(p.read_text())]
        except (OSError, ValueError):
            return None

    def _write_cache(self, key: str, stable: list[tuple[str, float]]) -> None:
        if self.cache_dir is None:
            return
        try:
            atomic_write_text(self.cache_dir / f"{key}.json", json.dumps(stable))
        except OSError:  # a read-only cache is not fatal
            pass


def _read_formation_csv(path: Path) -> list[tuple[str, float]]:
    import pandas as pd

    df = pd.read_csv(path)
    col = "target" if "target" in df.columns else "e_form_per_atom"
    return list(zip(df["formula"].astype(str), df[col].astype(float), strict=True))


def _read_elemental_entries(path: Path) -> dict[str, float]:
    from pymatgen.entries.computed_entries import ComputedEntry

    with gzip.open(path, "rt") as fh:
        raw = json.load(fh)
    items = raw.values() if isinstance(raw, dict) else raw
    mu: dict[str, float] = {}
    with warnings.catch_warnings():  # pymatgen warns about noble-gas electronegativities
        warnings.simplefilter("ignore", UserWarning)
        for d in items:
            e = ComputedEntry.from_dict(d)
            el = e.composition.elements[0].symbol
            mu[el] = min(mu.get(el, math.inf), e.energy_per_atom)
    return mu


def build_hull_asset(data_dir: Path | str, out_dir: Path | str = ASSET_DIR) -> dict[str, int]:
    """Write the pruned MP reference table shipped in ``matgen/assets/hull``.

    Keeps, per reduced formula, the lowest formation energy, and drops compounds with
    ``e_form >= 0`` (never on the hull): the hulls are unchanged.
    """
    from pymatgen.core import Composition

    d = Path(data_dir) / "hull_refs"
    entries = _read_formation_csv(d / FORMATION_FILE)
    best: dict[str, float] = {}
    for f, e in entries:
        comp = Composition(f)
        if len(comp.elements) < 2 or not e < 0:
            continue
        k = comp.reduced_formula
        best[k] = min(best.get(k, math.inf), e)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["formula,e_form_per_atom"] + [f"{k},{v:.5f}" for k, v in sorted(best.items())]
    with gzip.open(out / "mp_e_form_pruned.csv.gz", "wt", compresslevel=9) as fh:
        fh.write("\n".join(lines) + "\n")
    mu = _read_elemental_entries(d / ELEMENTAL_FILE)
    atomic_write_text(out / "elemental_energies.json", json.dumps(mu, indent=1, sort_keys=True))
    return {"compositions": len(entries), "kept": len(best), "elements": len(mu)}
