"""DFT-verify the best-ranked rows of a score table (what ``matgen score --oracle dft`` does).

The MLIP scores every structure; the ``top`` rows by MLIP energy above the hull (lowest first;
rows with an error or without a hull distance are not ranked) are verified with
:class:`DFTVerifier` and get ``dft_*`` columns. Every stability number gets a judge column
naming who produced it (``e_above_hull_judge``: the MLIP; ``dft_e_above_hull_judge``:
``dft:gpaw-pbe``), so a table mixing both never leaves a number's origin to guesswork.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from matgen.dft._verify import JUDGE

#: The stability numbers of a score row that get a ``<name>_judge`` column (their ``dft_``
#: twins too).
STABILITY = ("energy_per_atom", "e_form_per_atom", "e_above_hull")

#: Unit and meaning of the columns :func:`add_dft_scores` adds.
DFT_SCORE_COLUMNS: dict[str, tuple[str, str]] = {
    "dft_rank": ("", "rank by the MLIP's e_above_hull (1 = lowest) among the rows sent to DFT"),
    "dft_status": ("", (
        "DFT outcome: ok, scf_not_converged, relax_not_converged, timeout, crashed, error, "
        "no_paw_setup; empty: not verified (outside --top)")),
    "dft_message": ("", "why a DFT number is missing, or that the GPAW hull is incomplete"),
    "dft_energy_per_atom": ("eV/atom", (
        "GPAW PBE total energy of the DFT-relaxed structure (GPAW's own scale, not the MLIP's "
        "or MP's)")),
    "dft_e_form_per_atom": ("eV/atom", (
        "formation energy against GPAW elemental references computed the same way (plain PBE: "
        "no MP2020 corrections)")),
    "dft_e_above_hull": ("eV/atom", (
        "energy above the GPAW hull of the competing phases MP's hull names (MP-20 structures "
        "computed with the same settings); signed; a lower bound when dft_hull_complete is "
        "False")),
    "dft_hull_complete": ("", "True when every competing phase was computed"),
    "dft_competing_phases": ("", "each competing phase and where its structure came from"),
    "dft_wall_s": ("s", "wall time the candidate's own calculation took when it was computed"),
    "dft_cached": ("", "True when the calculation came from the cache (computed earlier)"),
    "dft_key": ("", "the calculation's cache key (its JSON and GPAW log in the cache folder)"),
    "dft_mp_correction": ("", (
        "what MP corrects in this composition and whether the DFT numbers got it (PBE+U at "
        "MP's U values and the MP hull scale's corrections); 'none': MP corrects nothing, "
        "DFT and MLIP numbers compare as they are")),
    **{f"{k}_judge": ("", f"who produced {k}: the MLIP's name") for k in STABILITY},
    **{f"dft_{k}_judge": ("", f"who produced dft_{k}: {JUDGE} (empty: no number)")
       for k in STABILITY},
}


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rank_for_dft(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the rows DFT can take, best first: no error, a relaxed structure and a finite
    ``e_above_hull``, ascending (ties by id)."""
    ok = [
        i
        for i, r in enumerate(rows)
        if not r.get("error") and r.get("relaxed_cif") and _finite(r.get("e_above_hull")) is not None
    ]
    return sorted(ok, key=lambda i: (_finite(rows[i]["e_above_hull"]), str(rows[i].get("id"))))


def add_dft_scores(
    rows: list[dict[str, Any]],
    top: int,
    verifier,
    mlip: str,
    progress: Callable[[], None] | None = None,
) -> list[int]:
    """Verify the ``top`` best rows with DFT and add the ``dft_*`` and judge columns (in place).

    Args:
        rows: score rows (:func:`matgen.surrogates._score.score_structures`, with
            ``relaxed_cif``).
        top: how many rows to verify.
        verifier: a :class:`DFTVerifier` (anything with ``verify_one(structure, label)``).
        mlip: the name of the MLIP that produced the score numbers.
        progress: called after each verified row.

    Returns:
        The indices of the verified rows, best first.
    """
    from pymatgen.core import Structure

    chosen = rank_for_dft(rows)[:top]
    for rank, i in enumerate(chosen, 1):
        row = rows[i]
        dft = verifier.verify_one(
            Structure.from_str(row["relaxed_cif"], fmt="cif"), label=str(row.get("id", i))
        )
        dft.pop("judge", None)
        row.update(dft, dft_rank=rank)
        if progress is not None:
            progress()
    for row in rows:
        for k in STABILITY:
            row[f"{k}_judge"] = mlip if _finite(row.get(k)) is not None else ""
            if "dft_status" in row:
                row[f"dft_{k}_judge"] = JUDGE if _finite(row.get(f"dft_{k}")) is not None else ""
    return chosen
