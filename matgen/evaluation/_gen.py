"""De novo generation metrics (CDVAE ``GenEval`` definitions, plus uniqueness and novelty).

* validity: ``comp_valid``, ``struct_valid`` and ``valid`` fractions over all generated frames
  (:mod:`matgen.evaluation._validity`); as in CDVAE, a constructed crystal whose CrystalNN
  fingerprint cannot be computed is not ``valid`` (when coverage is computed);
* COV-R / COV-P: per CDVAE ``compute_cov``: fingerprints of every generated crystal that has
  them (valid or not) and of the references; a reference is *recalled* when some generated
  crystal is within both the structure cut-off (Euclidean distance of site-averaged CrystalNN
  fingerprints) and the composition cut-off (Euclidean distance of standardized Magpie
  fingerprints); COV-R = recalled references / references with fingerprints, COV-P = generated
  crystals within both cut-offs of some reference / all generated frames;
* Wasserstein distances (``scipy.stats.wasserstein_distance``) between valid generated crystals
  and references of density (g/cm^3), number of distinct elements, and optionally a property;
* uniqueness / novelty: among valid generated crystals, a crystal is unique if no earlier valid
  crystal matches it, novel if no training crystal matches it (pymatgen ``StructureMatcher``,
  default tolerances ltol=0.2, stol=0.3, angle_tol=5; only crystals of the same reduced formula
  are compared, which is exact because the matcher never matches different reduced formulas).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np

# FINGERPRINT_TABLE_DIR and cif_key: read from here by benchmarks/eval_reference_fingerprints.py
from matgen.evaluation._describe import (  # noqa: F401
    FINGERPRINT_TABLE_DIR,
    _describe,
    _describe_references,
    cif_key,
)
from matgen.evaluation._io import GeneratedSet, ReferenceSet, parse_cif
from matgen.evaluation._parallel import parallel_map
from matgen.evaluation._validity import CrystalArrays, build_structure

#: Published COV cut-offs (structure, composition) per dataset, CDVAE ``COV_Cutoffs``.
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp20": (0.4, 10.0),
    "perov5": (0.2, 4.0),
    "carbon24": (0.2, 4.0),
}
_ALIASES = {
    "mp_20": "mp20",
    "mp20_reduced": "mp20",
    "perov_5": "perov5",
    "perovskite": "perov5",
    "carbon": "carbon24",
    "carbon_24": "carbon24",
}


def cov_cutoffs(dataset: str) -> tuple[float, float]:
    """(structure, composition) COV cut-offs of a dataset name (mp20, perov5, carbon24)."""
    key = _ALIASES.get(dataset.lower(), dataset.lower())
    if key not in COV_CUTOFFS:
        raise KeyError(f"no published COV cut-offs for {dataset!r}; known: {sorted(COV_CUTOFFS)}")
    return COV_CUTOFFS[key]


def guess_dataset(path: str | os.PathLike) -> str | None:
    """Dataset name from a reference path (``.../mp20_reduced/test.csv`` -> ``mp20``)."""
    p = str(path).lower()
    for token, name in (
        ("mp20", "mp20"),
        ("mp_20", "mp20"),
        ("perov", "perov5"),
        ("carbon", "carbon24"),
    ):
        if token in p:
            return name
    return None


@dataclass(frozen=True)
class GenConfig:
    """Settings of :func:`evaluate_generation`.

    Attributes:
        dataset: name for the COV cut-offs (``mp20``, ``perov5``, ``carbon24``), or ``None``.
        struc_cutoff, comp_cutoff: explicit COV cut-offs (override ``dataset``).
        coverage: compute fingerprints and COV (slow: CrystalNN, ~0.4 s per MP-20 crystal).
        uniqueness, novelty: compute them (novelty needs a training set).
        ltol, stol, angle_tol: StructureMatcher tolerances for uniqueness/novelty.
        n_samples: draw this many valid crystals (seeded) for the Wasserstein distances, as
            CDVAE draws 1,000; ``None`` uses all valid crystals.
        seed: for ``n_samples``.
        cache_dir: where reference fingerprints are cached (keyed by CIF-text hash);
            ``None`` = ``evaluation`` in matgen.data.cache_dir(); ``""`` disables.
        smact_rules: ``"cdvae"`` or ``"smact4"`` (see :func:`matgen.evaluation.smact_validity`).
    """

    dataset: str | None = None
    struc_cutoff: float | None = None
    comp_cutoff: float | None = None
    coverage: bool = True
    uniqueness: bool = True
    novelty: bool = True
    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    n_samples: int | None = None
    seed: int = 0
    cache_dir: str | None = None
    smact_rules: str = "cdvae"


# ----------------------------------------------------------------------------- workers
@cache
def _uniq_matcher(ltol: float, stol: float, angle_tol: float):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol)


def _fit(m, a, b) -> bool:
    try:
        return bool(m.fit(a, b))
    except Exception:  # noqa: BLE001
        return False


def _unique_novel_group(
    item: tuple[list[CrystalArrays], list[CrystalArrays], tuple[float, float, float], bool],
) -> list[tuple[int, bool]]:
    """Worker: for crystals of one reduced formula, (index of the first equal crystal, novel)."""
    gen_arrays, train_arrays, tol, do_novel = item
    m = _uniq_matcher(*tol)
    gen = [build_structure(a)[0] for a in gen_arrays]
    train = [build_structure(a)[0] for a in train_arrays] if do_novel else []
    reps: list[int] = []
    out = []
    for i, s in enumerate(gen):
        first = i
        for r in reps:
            if _fit(m, gen[r], s):
                first = r
                break
        if first == i:
            reps.append(i)
            novel = not any(t is not None and _fit(m, s, t) for t in train)
        else:
            novel = out[first][1]
        out.append((first, novel))
    return out


def coverage(
    gen_struc_fps: np.ndarray,
    gen_comp_fps: np.ndarray,
    ref_struc_fps: np.ndarray,
    ref_comp_fps: np.ndarray,
    struc_cutoff: float,
    comp_cutoff: float,
    num_generated: int | None = None,
) -> dict[str, float]:
    """CDVAE COV-R and COV-P from fingerprints (composition fingerprints already scaled).

    Args:
        gen_struc_fps: ``(n_gen, 61)``; gen_comp_fps: ``(n_gen, 132)`` of generated crystals
            that have fingerprints.
        ref_struc_fps: ``(n_ref, 61)``; ref_comp_fps: ``(n_ref, 132)``.
        struc_cutoff, comp_cutoff: distance cut-offs.
        num_generated: COV-P denominator (all generated frames); default ``n_gen``.
    """
    from scipy.spatial.distance import cdist

    n_gen = num_generated if num_generated is not None else len(gen_struc_fps)
    if len(gen_struc_fps) == 0 or len(ref_struc_fps) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    sd = cdist(np.asarray(gen_struc_fps), np.asarray(ref_struc_fps))
    cd = cdist(np.asarray(gen_comp_fps), np.asarray(ref_comp_fps))
    recall = np.logical_and(sd.min(axis=0) <= struc_cutoff, cd.min(axis=0) <= comp_cutoff)
    precision = np.logical_and(sd.min(axis=1) <= struc_cutoff, cd.min(axis=1) <= comp_cutoff)
    return {
        "cov_recall": float(recall.mean()),
        "cov_precision": float(precision.sum() / n_gen) if n_gen else 0.0,
    }


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float | None:
    """1-D Wasserstein distance (``scipy.stats.wasserstein_distance``), ``None`` if empty."""
    from scipy.stats import wasserstein_distance

    a = [x for x in a if x is not None and np.isfinite(x)]
    b = [x for x in b if x is not None and np.isfinite(x)]
    if not a or not b:
        return None
    return float(wasserstein_distance(a, b))


@dataclass
class GenResult:
    """De novo evaluation output: JSON-ready ``metrics`` and one row per generated frame."""

    metrics: dict[str, Any]
    per_structure: list[dict[str, Any]] = field(default_factory=list)


def evaluate_generation(
    generated: GeneratedSet,
    reference: ReferenceSet,
    train: ReferenceSet | None = None,
    config: GenConfig = GenConfig(),
    property_name: str | None = None,
    property_generated: Sequence[float] | None = None,
    property_reference: Sequence[float] | None = None,
    property_predictor: Callable[[list], Sequence[float]] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> GenResult:
    """De novo metrics of generated frames against a reference (test) set.

    Property for the Wasserstein distance, first that applies: explicit
    ``property_generated`` / ``property_reference`` values; ``property_predictor`` applied to
    the valid generated and the reference structures (as CDVAE does with its property model);
    ``property_name`` read from the frames' info and the reference CSV column.

    Args:
        generated: frames (:func:`read_generated`).
        reference: the reference set, e.g. the test split.
        train: the training set for novelty (``None``: novelty not computed).
        config: :class:`GenConfig`.
        property_name, property_generated, property_reference, property_predictor: see above.
        workers: processes.
        progress: progress bars.
    """
    with_fp = config.coverage
    g_items = [(a, False, with_fp, None, config.smact_rules) for a in generated.arrays]
    gres = parallel_map(_describe, g_items, workers=workers, progress=progress, desc="generated")
    rres = _describe_references(
        reference.cifs, with_fp, config, workers, progress, desc="reference"
    )
    metrics, valid_idx = _validity_metrics(gres, len(reference))
    metrics["unparsable_reference_ids"] = [  # left out of the distributions
        reference.ids[i] for i, r in enumerate(rres) if r["invalid_reason"] == "unparsable_cif"]
    sample_idx = list(valid_idx)
    if config.n_samples is not None and len(sample_idx) > config.n_samples:
        rng = np.random.default_rng(config.seed)
        sample_idx = sorted(rng.choice(sample_idx, config.n_samples, replace=False).tolist())
    metrics.update(_distribution_metrics(gres, rres, sample_idx))
    pg, pr, note = _property_values(
        generated, reference, sample_idx, property_name, property_generated,
        property_reference, property_predictor,
    )  # fmt: skip
    if note is not None:
        metrics["wdist_property_note"] = note
    if pg is not None and pr is not None:
        metrics["wdist_property"] = wasserstein(pg, pr)
        metrics["property"] = property_name or "predicted"
        metrics["num_property_values_generated"] = len(pg)
    if with_fp:
        metrics.update(_coverage_metrics(gres, rres, config))
    first: list[int] = list(range(len(gres)))
    novel: list[bool | None] = [None] * len(gres)
    if config.uniqueness or (config.novelty and train is not None):
        first, novel = _unique_novel(generated, gres, valid_idx, train, config, workers, progress)
        metrics.update(_unique_novel_metrics(valid_idx, first, novel, train, config))
    metrics["config"] = asdict(config)
    return GenResult(metrics=metrics, per_structure=_per_structure(generated, gres, first, novel))


def _validity_metrics(
    gres: list[dict[str, Any]], n_reference: int
) -> tuple[dict[str, Any], list[int]]:
    """Counts and validity rates of the generated crystals, and the indices of the valid ones."""
    n = len(gres)
    valid_idx = [i for i, r in enumerate(gres) if r["valid"]]
    metrics: dict[str, Any] = {
        "task": "gen",
        "num_generated": n,
        "num_reference": n_reference,
        "num_valid": len(valid_idx),
        "comp_valid": float(np.mean([r["comp_valid"] for r in gres])) if n else None,
        "struct_valid": float(np.mean([r["struct_valid"] for r in gres])) if n else None,
        "valid": len(valid_idx) / n if n else None,
    }
    reasons: dict[str, int] = defaultdict(int)
    for r in gres:
        if r["invalid_reason"]:
            reasons[r["invalid_reason"]] += 1
    metrics["invalid_reasons"] = dict(reasons)
    return metrics, valid_idx


def _distribution_metrics(
    gres: list[dict[str, Any]], rres: list[dict[str, Any]], sample_idx: list[int]
) -> dict[str, Any]:
    """Wasserstein distances of density and element count (sampled valid crystals)."""
    ref_ok = [r for r in rres if r["constructed"]]
    return {
        "wdist_density": wasserstein(
            [gres[i]["density"] for i in sample_idx], [r["density"] for r in ref_ok]
        ),
        "wdist_num_elements": wasserstein(
            [gres[i]["num_elements"] for i in sample_idx], [r["num_elements"] for r in ref_ok]
        ),
        "num_distribution_samples": len(sample_idx),
    }


def _property_values(
    generated: GeneratedSet,
    reference: ReferenceSet,
    sample_idx: list[int],
    property_name: str | None,
    property_generated: Sequence[float] | None,
    property_reference: Sequence[float] | None,
    property_predictor: Callable[[list], Sequence[float]] | None,
) -> tuple[list[float] | None, Sequence[float] | None, str | None]:
    """Generated and reference values of the property (see :func:`evaluate_generation`), and
    a note when the reference lacks the named property."""
    if property_generated is not None and property_reference is not None:
        pg = [float(property_generated[i]) for i in sample_idx]
        return pg, [float(x) for x in property_reference], None
    if property_predictor is not None:
        pg = list(property_predictor([build_structure(generated.arrays[i])[0] for i in sample_idx]))
        return pg, list(property_predictor([parse_cif(c) for c in reference.cifs])), None
    if property_name is not None:
        pg = [
            float(generated.info[i][property_name])
            for i in sample_idx
            if property_name in generated.info[i]
        ]
        pr = reference.properties.get(property_name)
        note = f"reference has no numeric column {property_name!r}" if pr is None else None
        return pg, pr, note
    return None, None, None


def _coverage_metrics(
    gres: list[dict[str, Any]], rres: list[dict[str, Any]], config: GenConfig
) -> dict[str, Any]:
    """COV recall and precision with the configured (or the dataset's) cut-offs."""
    sc, cc = config.struc_cutoff, config.comp_cutoff
    if (sc is None or cc is None) and config.dataset is not None:
        dsc, dcc = cov_cutoffs(config.dataset)
        sc = dsc if sc is None else sc
        cc = dcc if cc is None else cc
    if sc is None or cc is None:
        return {
            "coverage_note": (
                "COV not computed: give a dataset (mp20, perov5, carbon24) or explicit cut-offs"
            )
        }
    from matgen.evaluation._fingerprints import scale_composition_fingerprints

    g_fp = [r for r in gres if r["struct_fp"] is not None]
    r_fp = [r for r in rres if r["struct_fp"] is not None]
    gs = np.array([r["struct_fp"] for r in g_fp]).reshape(len(g_fp), -1)
    gc = scale_composition_fingerprints(np.array([r["comp_fp"] for r in g_fp]))
    rs = np.array([r["struct_fp"] for r in r_fp]).reshape(len(r_fp), -1)
    rc = scale_composition_fingerprints(np.array([r["comp_fp"] for r in r_fp]))
    out = coverage(gs, gc, rs, rc, sc, cc, num_generated=len(gres))
    out["cov_cutoffs"] = {"struc": sc, "comp": cc, "dataset": config.dataset}
    out["num_reference_fingerprints"] = len(r_fp)
    return out


def _unique_novel(
    generated: GeneratedSet,
    gres: list[dict[str, Any]],
    valid_idx: list[int],
    train: ReferenceSet | None,
    config: GenConfig,
    workers: int,
    progress: bool,
) -> tuple[list[int], list[bool | None]]:
    """For each generated crystal the first valid one it matches (itself when unique) and
    whether it is novel (``None``: novelty not computed or the crystal is invalid)."""
    first = list(range(len(gres)))
    novel: list[bool | None] = [None] * len(gres)
    do_novel = config.novelty and train is not None
    matches = match_within_formulas(
        {i: generated.arrays[i] for i in valid_idx},
        {i: gres[i]["formula"] for i in valid_idx},
        train if do_novel else None,
        config,
        workers,
        progress,
    )
    for i, (f, is_novel) in matches.items():
        first[i] = f
        novel[i] = is_novel if do_novel else None
    return first, novel


def match_within_formulas(
    arrays: dict[int, CrystalArrays],
    formulas: dict[int, str],
    train: ReferenceSet | None,
    config: GenConfig,
    workers: int,
    progress: bool,
) -> dict[int, tuple[int, bool]]:
    """Uniqueness and novelty among crystals of the same reduced formula (the matcher never
    matches different ones): for each crystal (keyed by its index) the index of the first
    crystal that matches it (itself when unique) and whether no training crystal matches it
    (always True without ``train``)."""
    train_by_formula: dict[str, list[CrystalArrays]] = defaultdict(list)
    if train is not None:
        tres = _describe_references(
            train.cifs, False, config, workers, progress, desc="training set"
        )
        for r in tres:
            if r["formula"] is not None:
                train_by_formula[r["formula"]].append(r["arrays"])
    groups: dict[str, list[int]] = defaultdict(list)
    for i in arrays:
        groups[formulas[i]].append(i)
    keys = sorted(groups)
    tol = (config.ltol, config.stol, config.angle_tol)
    items = [
        ([arrays[i] for i in groups[f]], train_by_formula.get(f, []), tol, train is not None)
        for f in keys
    ]
    out = parallel_map(
        _unique_novel_group, items, workers=workers, progress=progress, desc="unique/novel"
    )
    matches: dict[int, tuple[int, bool]] = {}
    for f, res in zip(keys, out):
        idx = groups[f]
        for local, (first_local, is_novel) in enumerate(res):
            matches[idx[local]] = (idx[first_local], is_novel)
    return matches


def _unique_novel_metrics(
    valid_idx: list[int],
    first: list[int],
    novel: list[bool | None],
    train: ReferenceSet | None,
    config: GenConfig,
) -> dict[str, Any]:
    """Uniqueness (and novelty) rates over the valid generated crystals."""
    nv = len(valid_idx)
    n_unique = sum(1 for i in valid_idx if first[i] == i)
    metrics: dict[str, Any] = {
        "uniqueness": n_unique / nv if nv else None,
        "num_unique": n_unique,
    }
    if config.novelty and train is not None:
        n_novel = sum(1 for i in valid_idx if novel[i])
        n_un = sum(1 for i in valid_idx if novel[i] and first[i] == i)
        metrics["novelty"] = n_novel / nv if nv else None
        metrics["unique_and_novel"] = n_un / nv if nv else None
        metrics["num_novel"] = n_novel
        metrics["num_train"] = len(train)
    metrics["uniqueness_novelty_denominator"] = "valid generated crystals"
    metrics["uniqueness_matcher"] = {
        "class": "pymatgen StructureMatcher",
        "ltol": config.ltol,
        "stol": config.stol,
        "angle_tol": config.angle_tol,
    }
    return metrics


def _per_structure(
    generated: GeneratedSet,
    gres: list[dict[str, Any]],
    first: list[int],
    novel: list[bool | None],
) -> list[dict[str, Any]]:
    """One row per generated frame."""
    return [
        {
            "frame_index": i,
            "id": generated.ids[i] or generated.info[i].get("sample_id"),
            "formula": r["formula"],
            "valid": r["valid"],
            "comp_valid": r["comp_valid"],
            "struct_valid": r["struct_valid"],
            "invalid_reason": r["invalid_reason"],
            "density": r["density"],
            "num_elements": r["num_elements"],
            "unique": (first[i] == i) if r["valid"] else None,
            "duplicate_of": first[i] if (r["valid"] and first[i] != i) else None,
            "novel": novel[i],
        }
        for i, r in enumerate(gres)
    ]
