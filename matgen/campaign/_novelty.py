"""Which generated candidates are usable: physically valid (the crystal layer's checks) and new
(no structure match in the training data, an earlier round or earlier in this round)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matgen.campaign._store import CandidateRow
from matgen.crystal import ValidationOptions, check_crystal

log = logging.getLogger("matgen.campaign")

#: The checks a generated crystal must pass: atoms at least 0.5 Å apart (periodic images
#: included), between 1 and 200 Å^3 per atom.
GENERATED_CHECKS = ValidationOptions(
    min_distance=0.5, min_volume_per_atom=1.0, max_volume_per_atom=200.0
)


def validity_reason(structure) -> str | None:
    """A one-line reason a generated crystal is not physical (:func:`matgen.crystal.check_crystal`
    with :data:`GENERATED_CHECKS`), or None."""
    return check_crystal(
        np.asarray(structure.atomic_numbers, dtype=np.int64),
        np.asarray(structure.frac_coords, dtype=float),
        np.asarray(structure.lattice.matrix, dtype=float),
        GENERATED_CHECKS,
    )


def training_formulas(train_csv: str | None) -> dict[str, list[str]]:
    """Reduced formula -> CIFs of the training set (empty without a ``train_csv``)."""
    idx: dict[str, list[str]] = {}
    if train_csv and not Path(train_csv).exists():
        log.warning("train_csv %s not found: no novelty check against training data", train_csv)
        return idx
    if not train_csv:
        return idx
    import pandas as pd
    from pymatgen.core import Composition, Structure

    df = pd.read_csv(train_csv)
    if "pretty_formula" in df.columns:
        forms = [Composition(f).reduced_formula for f in df["pretty_formula"]]
    else:
        forms = [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in df["cif"]]
    for f, c in zip(forms, df["cif"], strict=True):
        idx.setdefault(f, []).append(c)
    return idx


def novelty_verdicts(
    cands: Sequence[CandidateRow], earlier: Sequence[CandidateRow], train: dict[str, list[str]]
) -> list[tuple[str, str, str | None]]:
    """``(candidate id, status, reason)`` for each of ``cands``: ``invalid``, ``duplicate``
    (of a training structure, of one of ``earlier`` or of a candidate before it) or still
    ``generated``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    sm = StructureMatcher()
    seen: dict[str, list[tuple[str, Structure]]] = {}
    for c in earlier:
        seen.setdefault(c.reduced_formula, []).append((c.id, Structure.from_str(c.cif, fmt="cif")))
    parsed_train: dict[str, list[Structure]] = {}
    out = []
    for c in cands:
        s = Structure.from_str(c.cif, fmt="cif")
        reason = validity_reason(s)
        status = "invalid" if reason else "generated"
        f = c.reduced_formula
        if status == "generated" and f in train:
            if f not in parsed_train:
                parsed_train[f] = [Structure.from_str(x, fmt="cif") for x in train[f]]
            if any(sm.fit(s, t) for t in parsed_train[f]):
                status, reason = "duplicate", "matches a training structure"
        if status == "generated":
            oid = next((oid for oid, o in seen.get(f, []) if sm.fit(s, o)), None)
            if oid is not None:
                status, reason = "duplicate", f"matches {oid}"
            else:
                seen.setdefault(f, []).append((c.id, s))
        out.append((c.id, status, reason))
    return out
