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

import gzip
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from matgen.evaluation._io import GeneratedSet, ReferenceSet, parse_cif
from matgen.evaluation._parallel import parallel_map
from matgen.evaluation._validity import (
    CrystalArrays,
    arrays_from_structure,
    build_structure,
    check_validity,
)

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
            ``None`` = ``$MATGEN_CACHE_DIR`` or ``~/.cache/matgen``; ``""`` disables.
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
def _describe(item: tuple) -> dict[str, Any]:
    """Worker: validity, density, element count, fingerprints of one crystal.

    ``item = (payload, payload_is_cif, with_fingerprints[, known (struct_fp, comp_fp)
    [, smact_rules]])``.
    """
    payload, is_cif, with_fp = item[:3]
    known = item[3] if len(item) > 3 else None
    rules = item[4] if len(item) > 4 else "cdvae"
    if is_cif:
        s = parse_cif(payload)
        v = check_validity(s, None, "unparsable_cif", smact_rules=rules)
    else:
        s, why = build_structure(payload)
        v = check_validity(s, payload[1], why, smact_rules=rules)
    out: dict[str, Any] = {
        "constructed": v.constructed,
        "comp_valid": v.comp_valid,
        "struct_valid": v.struct_valid,
        "valid": v.valid,
        "invalid_reason": v.reason,
        "density": None,
        "num_elements": None,
        "formula": None,
        "arrays": None,
        "struct_fp": None,
        "comp_fp": None,
    }
    if s is None:
        return out
    out["density"] = float(s.density)
    out["num_elements"] = len(set(s.species))
    out["formula"] = s.composition.reduced_formula
    if is_cif:
        out["arrays"] = arrays_from_structure(s)
    if with_fp and known is not None:
        out["struct_fp"], out["comp_fp"] = list(known[0]), list(known[1])
    elif with_fp:
        from matgen.evaluation._fingerprints import composition_fingerprint, structure_fingerprint

        sfp = structure_fingerprint(s)
        if sfp is None:
            out["valid"] = False
            if not out["invalid_reason"]:
                out["invalid_reason"] = "fingerprint_failed"
        else:
            out["struct_fp"] = sfp.tolist()
            out["comp_fp"] = composition_fingerprint(s.composition).tolist()
    return out


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


# ----------------------------------------------------------------------------- caching
#: Folder of shipped fingerprint tables (``*.npz``: ``keys`` = sha1 of the CIF text,
#: ``struct_fp`` (n, 61), ``comp_fp`` (n, 132)), computed by this module from public datasets.
FINGERPRINT_TABLE_DIR = Path(__file__).resolve().parent / "_data"


def cif_key(cif: str) -> str:
    """Key of a CIF text in fingerprint tables (sha1 hex of its UTF-8 bytes)."""
    return hashlib.sha1(cif.encode()).hexdigest()


@cache
def _fingerprint_table() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    table: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in sorted(FINGERPRINT_TABLE_DIR.glob("*.npz")):
        try:
            z = np.load(f, allow_pickle=False)
            for k, s, c in zip(z["keys"], z["struct_fp"], z["comp_fp"], strict=True):
                table[str(k)] = (s, c)
        except Exception:  # noqa: BLE001, S112 - a broken table is ignored (recomputed)
            continue
    return table


def _cache_dir(cfg: GenConfig) -> Path | None:
    if cfg.cache_dir == "":
        return None
    base = cfg.cache_dir or os.environ.get("MATGEN_CACHE_DIR") or Path.home() / ".cache" / "matgen"
    return Path(base) / "evaluation"


def _describe_references(
    cifs: Sequence[str], with_fp: bool, cfg: GenConfig, workers: int, progress: bool, desc: str
) -> list[dict[str, Any]]:
    """:func:`_describe` of reference CIFs, cached on disk by the hash of all CIF texts.

    The cache is gzipped JSON (data only: nothing read from the cache folder can run code;
    ``describe_*.pkl`` files of older versions are never opened).
    """
    d = _cache_dir(cfg)
    h = hashlib.sha256()
    for c in cifs:
        h.update(c.encode())
        h.update(b"\0")
    key = f"describe_{h.hexdigest()[:24]}_{int(with_fp)}_{cfg.smact_rules}.json.gz"
    if d is not None and (d / key).exists():
        cached = _read_describe_cache(d / key, len(cifs))
        if cached is not None:
            return cached
    table = _fingerprint_table() if with_fp else {}
    items = [(c, True, with_fp, table.get(cif_key(c)), cfg.smact_rules) for c in cifs]
    res = parallel_map(_describe, items, workers=workers, progress=progress, desc=desc)
    if d is not None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / (key + f".{os.getpid()}.tmp")
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                json.dump(res, f, default=_plain)
            tmp.replace(d / key)
        except OSError:
            pass
    return res


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON data: {type(obj).__name__}")


_DESCRIBE_KEYS = frozenset(("constructed", "comp_valid", "struct_valid", "valid", "invalid_reason",
                            "density", "num_elements", "formula", "arrays", "struct_fp",
                            "comp_fp"))


def _read_describe_cache(path: Path, n: int) -> list[dict[str, Any]] | None:
    """The cached descriptions, or None when the file is unreadable or not of their shape
    (then they are recomputed)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = json.load(f)
    except (OSError, EOFError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rows, list) or len(rows) != n:
        return None
    for r in rows:
        if not isinstance(r, dict) or set(r) != _DESCRIBE_KEYS:
            return None
        a = r["arrays"]
        if a is not None:
            if not (isinstance(a, list) and len(a) == 4):
                return None
            r["arrays"] = tuple(a)  # CrystalArrays
    return rows


# ----------------------------------------------------------------------------- metrics
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
    n = len(gres)
    valid_idx = [i for i, r in enumerate(gres) if r["valid"]]
    metrics: dict[str, Any] = {
        "task": "gen",
        "num_generated": n,
        "num_reference": len(reference),
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

    # ---- distributions over (a sample of) valid crystals
    sample_idx = list(valid_idx)
    if config.n_samples is not None and len(sample_idx) > config.n_samples:
        rng = np.random.default_rng(config.seed)
        sample_idx = sorted(rng.choice(sample_idx, config.n_samples, replace=False).tolist())
    ref_ok = [r for r in rres if r["constructed"]]
    metrics["wdist_density"] = wasserstein(
        [gres[i]["density"] for i in sample_idx], [r["density"] for r in ref_ok]
    )
    metrics["wdist_num_elements"] = wasserstein(
        [gres[i]["num_elements"] for i in sample_idx], [r["num_elements"] for r in ref_ok]
    )
    metrics["num_distribution_samples"] = len(sample_idx)
    pg = pr = None
    if property_generated is not None and property_reference is not None:
        pg = [float(property_generated[i]) for i in sample_idx]
        pr = [float(x) for x in property_reference]
    elif property_predictor is not None:
        pg = list(property_predictor([build_structure(generated.arrays[i])[0] for i in sample_idx]))
        pr = list(property_predictor([parse_cif(c) for c in reference.cifs]))
    elif property_name is not None:
        pg = [
            float(generated.info[i][property_name])
            for i in sample_idx
            if property_name in generated.info[i]
        ]
        pr = reference.properties.get(property_name)
        if pr is None:
            metrics["wdist_property_note"] = f"reference has no numeric column {property_name!r}"
    if pg is not None and pr is not None:
        metrics["wdist_property"] = wasserstein(pg, pr)
        metrics["property"] = property_name or "predicted"
        metrics["num_property_values_generated"] = len(pg)

    # ---- coverage
    if with_fp:
        sc, cc = config.struc_cutoff, config.comp_cutoff
        if (sc is None or cc is None) and config.dataset is not None:
            dsc, dcc = cov_cutoffs(config.dataset)
            sc = dsc if sc is None else sc
            cc = dcc if cc is None else cc
        if sc is None or cc is None:
            metrics["coverage_note"] = (
                "COV not computed: give a dataset (mp20, perov5, carbon24) or explicit cut-offs"
            )
        else:
            from matgen.evaluation._fingerprints import scale_composition_fingerprints

            g_fp = [r for r in gres if r["struct_fp"] is not None]
            r_fp = [r for r in rres if r["struct_fp"] is not None]
            gs = np.array([r["struct_fp"] for r in g_fp]).reshape(len(g_fp), -1)
            gc = scale_composition_fingerprints(np.array([r["comp_fp"] for r in g_fp]))
            rs = np.array([r["struct_fp"] for r in r_fp]).reshape(len(r_fp), -1)
            rc = scale_composition_fingerprints(np.array([r["comp_fp"] for r in r_fp]))
            metrics.update(coverage(gs, gc, rs, rc, sc, cc, num_generated=n))
            metrics["cov_cutoffs"] = {"struc": sc, "comp": cc, "dataset": config.dataset}
            metrics["num_reference_fingerprints"] = len(r_fp)

    # ---- uniqueness / novelty
    first = list(range(n))
    novel: list[bool | None] = [None] * n
    if config.uniqueness or (config.novelty and train is not None):
        do_novel = config.novelty and train is not None
        train_by_formula: dict[str, list[CrystalArrays]] = defaultdict(list)
        if do_novel:
            tres = _describe_references(
                train.cifs, False, config, workers, progress, desc="training set"
            )
            for r in tres:
                if r["formula"] is not None:
                    train_by_formula[r["formula"]].append(r["arrays"])
        groups: dict[str, list[int]] = defaultdict(list)
        for i in valid_idx:
            groups[gres[i]["formula"]].append(i)
        keys = sorted(groups)
        tol = (config.ltol, config.stol, config.angle_tol)
        items = [
            ([generated.arrays[i] for i in groups[f]], train_by_formula.get(f, []), tol, do_novel)
            for f in keys
        ]
        out = parallel_map(
            _unique_novel_group, items, workers=workers, progress=progress, desc="unique/novel"
        )
        for f, res in zip(keys, out):
            idx = groups[f]
            for local, (first_local, is_novel) in enumerate(res):
                first[idx[local]] = idx[first_local]
                novel[idx[local]] = is_novel if do_novel else None
        nv = len(valid_idx)
        n_unique = sum(1 for i in valid_idx if first[i] == i)
        metrics["uniqueness"] = n_unique / nv if nv else None
        metrics["num_unique"] = n_unique
        if do_novel:
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
    metrics["config"] = asdict(config)

    per_structure = []
    for i, r in enumerate(gres):
        per_structure.append(
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
        )
    return GenResult(metrics=metrics, per_structure=per_structure)
