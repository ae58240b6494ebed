"""What a round asks the generator for (conditions, chunks and their seeds) and the candidate
rows made from what it returns."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from matgen.campaign._config import CampaignConfig

log = logging.getLogger("matgen.campaign")


def generation_conditions(
    cfg: CampaignConfig, labels: Mapping[str, Mapping[str, float | None]]
) -> dict[str, Any]:
    """Generation conditions from the objectives, steered by the labels so far.

    A window asks for the window (``(lo, hi)``, sampled uniformly by the generator); a goal
    asks for the best oracle value seen so far (or the value in ``generator.conditions``
    before any label). ``generator.conditioned: false``: no conditions at all.
    """
    if not cfg.generator.conditioned:
        return {}
    cond: dict[str, Any] = dict(cfg.generator.conditions)
    for o in cfg.objectives:
        if o.minimum is not None or o.maximum is not None:
            cond.setdefault(o.property, (o.minimum, o.maximum))
        elif o.goal is not None:
            seen = [lab[o.property] for lab in labels.values() if lab.get(o.property) is not None]
            if seen:
                cond[o.property] = max(seen) if o.goal == "maximize" else min(seen)
    return cond


def chunk_plan(cfg: CampaignConfig, index: int) -> list[tuple[int, int, int]]:
    """``(chunk, n, seed)`` of the generation chunks of round ``index``."""
    size = max(1, cfg.generator.chunk_size)
    seed = cfg.round_seed(index)
    out, left, k = [], cfg.pool_size, 0
    while left > 0:
        n = min(size, left)
        out.append((k, n, seed + 104729 * k))
        left -= n
        k += 1
    return out


def _reads_back(cif: str, num_sites: int) -> bool:
    """True when ``cif`` parses back to ``num_sites`` sites (pymatgen merges atoms that sit on
    one spot into one partly occupied site, or refuses the file)."""
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return len(Structure.from_str(cif, fmt="cif")) == num_sites
    except ValueError:
        return False


def generated_rows(batch) -> list[dict[str, Any]]:
    """``{source_id, cif}`` of each crystal of a generated batch (ids + structures); a crystal
    whose CIF does not read back (atoms on one spot) is dropped with a warning."""
    rows = []
    for sid, s in zip(batch.ids, batch.to_structures(), strict=True):
        cif = s.to(fmt="cif")
        if _reads_back(cif, len(s)):
            rows.append({"source_id": sid, "cif": cif})
        else:  # atoms on one spot: no CIF can hold it, and no crystal has it
            log.warning(
                "generated crystal %s (%s) dropped: atoms coincide, its CIF does not read back",
                sid,
                s.composition.reduced_formula,
            )
    return rows


def describe(structure) -> tuple[str, str, str | None]:
    """(formula, reduced formula, space group symbol or None)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    comp = structure.composition
    # elements sort by electronegativity; noble gases have none and pymatgen warns (nothing a
    # user can act on)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sg = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol()
        except Exception:  # noqa: BLE001 - spglib fails on broken cells
            sg = None
        return comp.formula.replace(" ", ""), comp.reduced_formula, sg


def candidate_rows(
    campaign: str, index: int, chunks: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """The ``candidates`` rows of round ``index`` from generated chunks of ``{source_id, cif}``
    (ids ``<campaign>-r<round>-<position>``)."""
    from pymatgen.core import Structure

    rows = []
    for pos, r in enumerate(r for chunk in chunks for r in chunk):
        formula, reduced, sg = describe(Structure.from_str(r["cif"], fmt="cif"))
        rows.append(
            {
                "id": f"{campaign}-r{index:03d}-{pos:05d}",
                "round_index": index,
                "position": pos,
                "source_id": r.get("source_id"),
                "formula": formula,
                "reduced_formula": reduced,
                "spacegroup": sg,
                "cif": r["cif"],
                "status": "generated",
            }
        )
    return rows
