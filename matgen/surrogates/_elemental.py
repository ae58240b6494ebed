"""MLIP-consistent elemental reference energies for the MP formation-energy hull.

The MP reference hull (:meth:`ConvexHull.from_mp`) is a *formation-energy* hull; an MLIP's
total energy per atom becomes a formation energy through elemental reference energies ``mu``.
The MP values of ``mu`` (legacy correction scheme) are not on an MLIP's energy scale: with
CHGNet, diamond Si relaxed by CHGNet lands ~0.1 eV/atom above its own reference. This module
computes ``mu`` on the MLIP's scale instead: for every element, its elemental structures
(the MP reference entry's own material where a dataset holds it, every other elemental
structure of the shared datasets up to ``max_atoms`` atoms, and ASE's ``bulk(symbol)``
reference state) are relaxed with the MLIP and the lowest energy per atom is kept. Elements
without a candidate (or skipped: noble gases) keep the MP value, with a note in ``sources``.

How the table is used (:meth:`ConvexHull.from_mp`, ``elemental=``): ``"chgnet"`` replaces MP's
references for every composition (fully consistent; on MP-20 test compounds it shifts formation
energies by about -0.03 eV/atom and worsens the e_above_hull MAE, because CHGNet's compound
energies already track MP's formation energies with MP's references), ``"chgnet-elements"``
(the default for CHGNet) uses it for single-element compositions only.

The table for CHGNet ships as ``matgen/assets/hull/elemental_energies_chgnet.json``; it is
written by ``benchmarks/surrogates_elemental_refs.py`` (which calls
:func:`compute_elemental_references`).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matgen.surrogates._hull import ASSET_DIR, ELEMENTAL_FILE, _read_elemental_entries

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

    from matgen.surrogates._mlip import MLIP
    from matgen.surrogates._relax import RelaxConfig

log = logging.getLogger(__name__)

#: Elements relaxed by default never (no bonding an MLIP trained on MP describes); MP value kept.
NOBLE_GASES = ("He", "Ne", "Ar", "Kr", "Xe", "Rn")
#: Dataset files searched for elemental structures (relative to the data dir).
CANDIDATE_FILES = (
    "mp20_reduced/train.csv",
    "mp20_reduced/val.csv",
    "mp20_reduced/test.csv",
    "mpts_52_partial/val.csv.gz",
    "mpts_52_partial/test.csv.gz",
)
_FORMULA_RE = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)")
_ELEMENT_RE = re.compile(r"[A-Z][a-z]?")


def mlip_elemental_asset(mlip_name: str) -> Path:
    """Path of the shipped elemental table of an MLIP (``elemental_energies_<name>.json``)."""
    return ASSET_DIR / f"elemental_energies_{mlip_name.lower()}.json"


def load_elemental_energies(source: str = "chgnet", data_dir: Path | str | None = None
                            ) -> dict[str, float]:
    """Elemental reference energies, eV/atom.

    Args:
        source: ``"mp"`` (the MP reference entries: ``$MATGEN_DATA_DIR/hull_refs`` else the
            shipped copy) or an MLIP name with a shipped table (``"chgnet"``; a
            ``"-elements"`` suffix is ignored).
        data_dir: folder holding ``hull_refs/`` (default ``$MATGEN_DATA_DIR``).

    Raises:
        ValueError: no table for ``source``.
    """
    if source == "mp":
        p = Path(data_dir or os.environ.get("MATGEN_DATA_DIR", "")) / "hull_refs" / ELEMENTAL_FILE
        if p.exists():
            return _read_elemental_entries(p)
        return {k: float(v) for k, v in
                json.loads((ASSET_DIR / "elemental_energies.json").read_text()).items()}
    path = mlip_elemental_asset(source.removesuffix("-elements"))
    if not path.exists():
        raise ValueError(f"no elemental reference table for {source!r} (expected {path}); "
                         "use 'mp' or compute one with compute_elemental_references")
    return {k: float(v) for k, v in json.loads(path.read_text())["energies"].items()}


def elemental_candidates(
    data_dir: Path | str | None = None, max_atoms: int = 32, with_ase: bool = True
) -> dict[str, list[tuple[str, Structure]]]:
    """Candidate ground-state structures per element of the MP reference entries.

    Args:
        data_dir: the shared datasets folder (default ``$MATGEN_DATA_DIR``).
        max_atoms: elemental structures with more atoms are not relaxed.
        with_ase: add ASE's ``bulk(symbol)`` reference-state crystal where ASE has one.

    Returns:
        ``{element: [(source label, structure), ...]}``, the MP reference entry's own material
        first when a dataset holds it; labels are ``"<file>:<material_id>"`` or ``"ase.bulk"``.
    """
    import pandas as pd
    from pymatgen.core import Structure

    d = Path(data_dir or os.environ.get("MATGEN_DATA_DIR", ""))
    with gzip.open(d / "hull_refs" / ELEMENTAL_FILE, "rt") as fh:
        raw = json.load(fh)
    ref_mid = {el: (e.get("data") or {}).get("material_id") for el, e in raw.items()}
    out: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
    seen: set[str] = set()
    for rel in CANDIDATE_FILES:
        if not (d / rel).exists():
            continue
        df = pd.read_csv(d / rel)
        for mid, cif in zip(df["material_id"], df["cif"], strict=True):
            m = _FORMULA_RE.search(cif)
            els = set(_ELEMENT_RE.findall(m.group(1))) if m else set()
            if len(els) != 1 or mid in seen:
                continue
            el = els.pop()
            if el not in ref_mid:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_str(cif, fmt="cif")
            if len(s) > max_atoms:
                continue
            seen.add(mid)
            item = (f"{rel}:{mid}", s)
            if mid == ref_mid[el]:
                out[el].insert(0, item)
            else:
                out[el].append(item)
    if with_ase:
        from ase.build import bulk
        from pymatgen.io.ase import AseAtomsAdaptor

        for el in ref_mid:
            try:
                atoms = bulk(el)
            except Exception as exc:  # noqa: BLE001 - ASE has no crystal reference state
                log.debug("no ase.build.bulk(%r): %s", el, exc)
                continue
            out[el].append(("ase.bulk", AseAtomsAdaptor.get_structure(atoms)))
    return dict(out)


def compute_elemental_references(
    mlip: MLIP,
    data_dir: Path | str | None = None,
    relax_config: RelaxConfig | None = None,
    max_atoms: int = 32,
    skip: tuple[str, ...] = NOBLE_GASES,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Relax elemental candidates with ``mlip``; the lowest energy per atom is the reference.

    Args:
        mlip: the potential.
        data_dir: the shared datasets folder (default ``$MATGEN_DATA_DIR``).
        relax_config: settings of the batched relaxation (default ``RelaxConfig()``).
        max_atoms: largest elemental cell relaxed.
        skip: elements not relaxed (MP value kept).
        progress: called with the number of structures finished.

    Returns:
        ``{"energies": {el: eV/atom}, "sources": {el: label}, "mp_energies": {el: eV/atom},
        "candidates": {el: {label: eV/atom}}}`` over all 89 MP reference elements; the source
        of an element that fell back is ``"mp (<reason>)"``.
    """
    from matgen.surrogates._relax import relax

    d = Path(data_dir or os.environ.get("MATGEN_DATA_DIR", ""))
    mp = _read_elemental_entries(d / "hull_refs" / ELEMENTAL_FILE)
    cands = elemental_candidates(d, max_atoms=max_atoms)
    labels: list[tuple[str, str]] = []
    structs: list[Structure] = []
    for el, items in sorted(cands.items()):
        if el in skip:
            continue
        for lab, s in items:
            labels.append((el, lab))
            structs.append(s)
    res = relax(structs, mlip, relax_config, ids=[f"{el}|{lab}" for el, lab in labels],
                progress=progress)
    per_el: dict[str, dict[str, float]] = defaultdict(dict)
    for (el, lab), r in zip(labels, res, strict=True):
        if r.error is None and math.isfinite(r.energy_per_atom):
            per_el[el][lab] = float(r.energy_per_atom)
        else:
            log.info("elemental reference %s %s failed: %s", el, lab, r.error)
    energies: dict[str, float] = {}
    sources: dict[str, str] = {}
    for el in sorted(mp):
        if per_el.get(el):
            lab, e = min(per_el[el].items(), key=lambda kv: kv[1])
            energies[el], sources[el] = e, lab
        else:
            why = ("skipped" if el in skip else
                   "no candidate structure" if el not in cands else "relaxation failed")
            log.info("elemental reference %s: MP value kept (%s)", el, why)
            energies[el], sources[el] = mp[el], f"mp ({why})"
    return {"energies": energies, "sources": sources, "mp_energies": mp,
            "candidates": {el: dict(v) for el, v in sorted(per_el.items())}}
