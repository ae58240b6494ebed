"""S.U.N. (stable, unique, novel) rate with an MLIP-judged stability, after MatterGen's protocol.

Protocol: every valid generated crystal is relaxed by a machine-learned interatomic potential
(CHGNet by default) and its energy above the reference convex hull is computed from the MLIP
energy; *stable* means ``e_above_hull <= threshold`` (0.1 and 0.0 eV/atom, reported separately);
*unique* and *novel* are judged on the relaxed structures with pymatgen's ``StructureMatcher``
(first of its kind among the relaxed generated crystals; no match in the training set).
Rates are fractions of **all** generated crystals (invalid or failed relaxations count as not
S.U.N.). Stability here is MLIP-judged, not DFT-judged: every output says so.

The scorer is injected: any ``scorer(structures) -> [(relaxed_structure | None, e_above_hull)]``
works; :func:`mlip_scorer` builds the default one from :mod:`matgen.surrogates`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matgen.evaluation._describe import _describe
from matgen.evaluation._gen import GenConfig, match_within_formulas
from matgen.evaluation._io import GeneratedSet, ReferenceSet
from matgen.evaluation._parallel import parallel_map
from matgen.evaluation._validity import arrays_from_structure, build_structure

#: ``scorer(structures) -> [(relaxed structure or None, e_above_hull eV/atom)]``.
Scorer = Callable[[list], Sequence[tuple[Any, float]]]

STABILITY_NOTE = (
    "stability is MLIP-judged (relaxation and energy by a machine-learned potential against "
    "a reference hull), not DFT-verified"
)


def mlip_scorer(
    model: str = "chgnet",
    hull=None,
    relax_config=None,
    device: str = "auto",
) -> tuple[Scorer, str]:
    """The default scorer: :mod:`matgen.surrogates` relaxation + MP reference hull.

    Args:
        model: MLIP name for :func:`matgen.surrogates.load_mlip` (``chgnet``, ``sevennet``,
            ``sevennet-0``).
        hull: a :class:`matgen.surrogates.ConvexHull` (default ``ConvexHull.from_mp()``).
        relax_config: :class:`matgen.surrogates.RelaxConfig`.
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``(scorer, description)``.
    """
    from matgen.surrogates import ConvexHull, load_mlip, relax
    from matgen.surrogates._score import mp_compatible_energies

    mlip = load_mlip(model, device=device)
    h = hull if hull is not None else ConvexHull.from_mp()

    def scorer(structures: list) -> list[tuple[Any, float]]:
        res = relax(list(structures), mlip, relax_config)
        # on the MP hull's energy scale (MP's legacy corrections; SevenNet's raw energies get
        # them, CHGNet's MP2020-corrected ones are converted)
        relaxed = [
            r.structure if r.structure is not None else s
            for s, r in zip(structures, res, strict=True)
        ]
        energies = mp_compatible_energies(mlip, relaxed, [r.energy_per_atom for r in res])
        out = []
        for s, r, e in zip(structures, res, energies, strict=True):
            e = float(e)
            ok = r.error is None and r.structure is not None and math.isfinite(e)
            ehull = float(h.e_above_hull(s.composition, e)) if ok else math.nan
            out.append((r.structure if ok else None, ehull))
        return out

    return (
        scorer,
        f"{model} relaxation (matgen.surrogates.relax) + {getattr(h, 'name', 'custom')} hull",
    )


def relaxation_rmsd(generated, relaxed) -> float | None:
    """RMS displacement (Å) between a structure and its relaxed version, atoms in the same order.

    Fractional displacements are wrapped to ``[-0.5, 0.5)``, their mean (a rigid translation)
    is removed, and they are expressed in the relaxed cell. ``None`` if the atom lists differ.
    """
    if relaxed is None or len(generated) != len(relaxed):
        return None
    if [s.specie for s in generated] != [s.specie for s in relaxed]:
        return None
    d = np.asarray(relaxed.frac_coords) - np.asarray(generated.frac_coords)
    d -= np.round(d)
    d -= d.mean(axis=0, keepdims=True)
    cart = d @ relaxed.lattice.matrix
    return float(np.sqrt((cart**2).sum(axis=1).mean()))


@dataclass
class SUNResult:
    """S.U.N. output: JSON-ready ``metrics`` and one row per generated crystal."""

    metrics: dict[str, Any]
    per_structure: list[dict[str, Any]] = field(default_factory=list)


def evaluate_sun(
    generated: GeneratedSet,
    scorer: Scorer,
    train: ReferenceSet | None = None,
    thresholds: Sequence[float] = (0.1, 0.0),
    scorer_name: str = "injected scorer",
    config: GenConfig | None = None,
    workers: int = 1,
    progress: bool = True,
) -> SUNResult:
    """Stable / unique / novel rates of generated crystals.

    Args:
        generated: frames (:func:`matgen.evaluation.read_generated`).
        scorer: relaxes and scores structures (see :data:`Scorer`, :func:`mlip_scorer`).
        train: training set for novelty (``None``: novelty not judged, S.U.N. becomes S.U.).
        thresholds: stability thresholds on ``e_above_hull``, eV/atom.
        scorer_name: written into the output.
        config: matcher tolerances and cache settings (see :class:`GenConfig`).
        workers: processes for validity and matching.
        progress: progress bars.
    """
    config = config or GenConfig(coverage=False)
    desc = parallel_map(
        _describe,
        [(a, False, False, None, config.smact_rules) for a in generated.arrays],
        workers=workers,
        progress=progress,
        desc="validity",
    )
    valid_idx = [i for i, d in enumerate(desc) if d["valid"]]
    j = _relax_valid(generated, valid_idx, scorer)
    matches = match_within_formulas(
        {i: arrays_from_structure(r) for i, r in j.relaxed.items()},
        {i: r.composition.reduced_formula for i, r in j.relaxed.items()},
        train,
        config,
        workers,
        progress,
    )
    j.unique = {i: f == i for i, (f, _) in matches.items()}
    j.novel = {i: bool(is_novel) for i, (_, is_novel) in matches.items()}
    j.novelty = train is not None
    metrics: dict[str, Any] = {
        "task": "sun",
        "stability_judged_by": STABILITY_NOTE,
        "scorer": scorer_name,
        "num_generated": len(generated),
        "num_valid": len(valid_idx),
        "num_relaxed": len(j.relaxed),
        "novelty_judged": j.novelty,
        "rate_denominator": "all generated crystals",
    }
    metrics.update(_stability_metrics(j, thresholds, len(generated)))
    rows = [_sun_row(i, generated, desc[i]["valid"], j, thresholds) for i in range(len(generated))]
    return SUNResult(metrics=metrics, per_structure=rows)


@dataclass
class _Judged:
    """By frame index: relaxed structures (valid crystals the scorer relaxed to a finite
    energy), energies above the hull, relaxation RMSDs, and uniqueness and novelty of the
    relaxed ones (``novelty``: whether novelty was judged)."""

    relaxed: dict[int, Any] = field(default_factory=dict)
    ehull: dict[int, float] = field(default_factory=dict)
    rmsd: dict[int, float | None] = field(default_factory=dict)
    unique: dict[int, bool] = field(default_factory=dict)
    novel: dict[int, bool] = field(default_factory=dict)
    novelty: bool = False


def _relax_valid(generated: GeneratedSet, valid_idx: list[int], scorer: Scorer) -> _Judged:
    """Relax and score the valid crystals (uniqueness and novelty not judged yet)."""
    structures = [build_structure(generated.arrays[i])[0] for i in valid_idx]
    scored = list(scorer(structures)) if structures else []
    if len(scored) != len(structures):
        raise ValueError(f"scorer returned {len(scored)} results for {len(structures)} structures")
    j = _Judged()
    for i, s, (r, e) in zip(valid_idx, structures, scored):
        e = float(e) if e is not None else math.nan
        j.ehull[i] = e
        if r is not None and math.isfinite(e):
            j.relaxed[i] = r
            j.rmsd[i] = relaxation_rmsd(s, r)
    return j


def _stability_metrics(j: _Judged, thresholds: Sequence[float], n: int) -> dict[str, Any]:
    """Energy and RMSD statistics, and the stable / unique / novel / S.U.N. rates over all
    ``n`` generated crystals."""
    metrics: dict[str, Any] = {}
    eh = np.array([j.ehull[i] for i in j.relaxed], dtype=float)
    metrics["e_above_hull_mean"] = float(eh.mean()) if eh.size else None
    metrics["e_above_hull_median"] = float(np.median(eh)) if eh.size else None
    rm = [v for v in j.rmsd.values() if v is not None]
    metrics["rmsd_generated_vs_relaxed_mean_angstrom"] = float(np.mean(rm)) if rm else None
    metrics["rmsd_generated_vs_relaxed_median_angstrom"] = float(np.median(rm)) if rm else None
    n_unique = sum(j.unique.values())
    metrics["unique_rate"] = n_unique / n if n else None
    if j.novelty:
        metrics["novel_rate"] = sum(j.novel.values()) / n if n else None
    for t in thresholds:
        stable = [i for i in j.relaxed if j.ehull[i] <= t]
        sun = [i for i in stable if j.unique[i] and j.novel[i]]
        tag = f"{t:g}"
        metrics[f"stable_rate@{tag}"] = len(stable) / n if n else None
        metrics[f"sun_rate@{tag}"] = len(sun) / n if n else None
        metrics[f"num_stable@{tag}"] = len(stable)
        metrics[f"num_sun@{tag}"] = len(sun)
    metrics["thresholds_ev_per_atom"] = list(thresholds)
    return metrics


def _sun_row(
    i: int, generated: GeneratedSet, valid: bool, j: _Judged, thresholds: Sequence[float]
) -> dict[str, Any]:
    """The per-structure row of frame ``i``."""
    row = {
        "frame_index": i,
        "id": generated.ids[i] or generated.info[i].get("sample_id"),
        "valid": valid,
        "relaxed": i in j.relaxed,
        "e_above_hull_mlip": j.ehull.get(i),
        "rmsd_to_relaxed": j.rmsd.get(i),
        "unique": j.unique.get(i),
        "novel": j.novel.get(i) if j.novelty else None,
    }
    for t in thresholds:
        st = i in j.relaxed and j.ehull[i] <= t
        row[f"stable@{t:g}"] = st
        row[f"sun@{t:g}"] = bool(st and j.unique.get(i) and j.novel.get(i))
    return row
