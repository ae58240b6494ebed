"""Crystal structure prediction (CSP) metrics: match rate and RMSE as CDVAE/DiffCSP compute them.

Definitions (CDVAE ``RecEval``, DiffCSP ``RecEval`` / ``RecEvalBatch``):

* matcher: ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``, other arguments default;
* a pair (generated, reference) *matches* when the generated crystal is valid and
  ``matcher.get_rms_dist(generated, reference)`` is not ``None`` (an exception counts as no
  match); its RMSE is that call's first value, the RMS displacement normalized by
  ``(V / N) ** (1 / 3)`` (the matcher's normalized units);
* *invalid* generated crystal (always unmatched): not constructible (non-finite numbers, singular
  lattice, unknown element, volume < 0.1 Å^3), or two distinct sites closer than 0.5 Å over
  periodic images, or SMACT-invalid composition (:func:`matgen.evaluation.smact_validity`);
* best-of-k: a reference is matched if any of its k samples matches; its RMSE is the minimum
  over the matching samples; match rate = matched references / all references; RMSE = mean
  over matched references.

Reference validity differs between the published scripts: DiffCSP's single-sample ``RecEval``
also requires the *reference* to be valid (SMACT + structure), DiffCSP's best-of-k
``RecEvalBatch`` and CDVAE's ``RecEval`` do not. ``reference_validity="auto"`` follows DiffCSP
(required for k = 1, not for k > 1); both variants are always reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from matgen.evaluation._io import GeneratedSet, ReferenceSet, parse_cif
from matgen.evaluation._parallel import parallel_map
from matgen.evaluation._validity import CrystalArrays, build_structure, check_validity


@dataclass(frozen=True)
class MatcherConfig:
    """StructureMatcher tolerances (CDVAE/DiffCSP CSP defaults)."""

    stol: float = 0.5
    angle_tol: float = 10.0
    ltol: float = 0.3


@lru_cache(maxsize=8)
def _matcher(cfg: MatcherConfig):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(stol=cfg.stol, angle_tol=cfg.angle_tol, ltol=cfg.ltol)


def rms_dist(generated, reference, cfg: MatcherConfig = MatcherConfig()) -> float | None:
    """``StructureMatcher(...).get_rms_dist(generated, reference)[0]``; ``None`` if no match
    or the matcher raises (as in CDVAE/DiffCSP)."""
    try:
        r = _matcher(cfg).get_rms_dist(generated, reference)
    except Exception:  # noqa: BLE001 - the published scripts count any failure as no match
        return None
    return None if r is None else float(r[0])


def _fingerprint_ok(structure) -> bool:
    from matgen.evaluation._fingerprints import structure_fingerprint

    return structure_fingerprint(structure) is not None


def _csp_one(item: tuple[str, list[CrystalArrays], MatcherConfig, str, bool]) -> dict[str, Any]:
    """Worker: validity of one reference and its samples, and their RMS distances."""
    cif, samples, cfg, rules, fp_check = item
    ref = parse_cif(cif)
    if ref is None:
        ref_ok, ref_reason = False, "unparsable_cif"
    else:
        rv = check_validity(ref, smact_rules=rules)
        ref_ok, ref_reason = rv.valid, rv.reason
        if ref_ok and fp_check and not _fingerprint_ok(ref):
            ref_ok, ref_reason = False, "fingerprint_failed"
    out = []
    for arr in samples:
        s, why = build_structure(arr)
        v = check_validity(s, arr[1], why, smact_rules=rules)
        valid, reason = v.valid, v.reason
        if valid and fp_check and not _fingerprint_ok(s):
            valid, reason = False, "fingerprint_failed"
        rms = rms_dist(s, ref, cfg) if (valid and ref is not None) else None
        out.append(
            {
                "valid": valid,
                "comp_valid": v.comp_valid,
                "struct_valid": v.struct_valid,
                "invalid_reason": reason,
                "rms_dist": rms,
            }
        )
    return {
        "ref_parsed": ref is not None,
        "ref_valid": ref_ok,
        "ref_reason": ref_reason,
        "samples": out,
    }


@dataclass
class CSPResult:
    """CSP evaluation output.

    Attributes:
        metrics: JSON-ready summary (see :func:`evaluate_csp`).
        per_structure: one row per evaluated generated frame.
        per_reference: one row per reference.
    """

    metrics: dict[str, Any]
    per_structure: list[dict[str, Any]] = field(default_factory=list)
    per_reference: list[dict[str, Any]] = field(default_factory=list)


def _summary(best: list[float | None]) -> tuple[float, float | None, int]:
    matched = [b for b in best if b is not None]
    n = len(best)
    rate = len(matched) / n if n else float("nan")
    return rate, (float(np.mean(matched)) if matched else None), len(matched)


def evaluate_csp(
    generated: GeneratedSet,
    reference: ReferenceSet,
    k: int | None = None,
    matcher: MatcherConfig = MatcherConfig(),
    reference_validity: Literal["auto", "require", "ignore"] = "auto",
    workers: int = 1,
    progress: bool = True,
    smact_rules: str = "cdvae",
    fingerprint_check: bool = False,
) -> CSPResult:
    """CSP match rate and RMSE of generated frames against their references.

    Frames are paired with references by ``material_id`` (``generated.ids``); several frames
    with one id are that reference's samples, of which the first ``k`` (file order) are used.
    A reference with no frame counts as unmatched. Frames whose id is not in the reference set
    are counted (``n_generated_unpaired``) and otherwise ignored.

    Args:
        generated: frames, e.g. from :func:`read_generated`.
        reference: references, e.g. from :func:`read_reference_csv`.
        k: samples per reference to use (default: all).
        matcher: StructureMatcher tolerances.
        reference_validity: ``"require"`` an invalid reference is unmatched (DiffCSP k = 1),
            ``"ignore"`` (CDVAE; DiffCSP k > 1), ``"auto"`` DiffCSP's choice for this k.
        workers: processes for matching.
        progress: progress bar on stderr.
        smact_rules: ``"cdvae"`` (the published rule) or ``"smact4"`` (smact 4 defaults), see
            :func:`matgen.evaluation.smact_validity`.
        fingerprint_check: also count a crystal as invalid when its CrystalNN fingerprint
            cannot be computed, as the published ``Crystal`` class does (it fingerprints every
            crystal); off by default because it costs ~0.4 s per crystal and almost never
            fails on a structurally valid crystal.

    Returns:
        :class:`CSPResult`; ``metrics`` holds ``match_rate``, ``rmse`` (headline convention),
        both conventions explicitly, validity counts and the settings.
    """
    if len(set(reference.ids)) != len(reference.ids):
        dup = [i for i, c in Counter(reference.ids).items() if c > 1][:5]
        raise ValueError(f"reference material_id values are not unique (e.g. {dup})")
    if k is not None and k < 1:
        raise ValueError("k must be >= 1")
    pairing = _pair_frames(generated.ids, reference.ids, k)
    items = [
        (
            reference.cifs[r],
            [generated.arrays[f] for f in pairing.groups[r]],
            matcher,
            smact_rules,
            fingerprint_check,
        )
        for r in range(len(reference))
    ]
    results = parallel_map(_csp_one, items, workers=workers, progress=progress, desc="CSP match")
    if reference_validity == "auto":
        require_ref = pairing.k_used <= 1
    else:
        require_ref = reference_validity == "require"
    tally = _tally(results, pairing.groups, reference.ids, require_ref)
    metrics = _csp_metrics(tally, results, pairing, require_ref, len(reference), len(generated))
    metrics.update(
        {
            "rmse_units": "StructureMatcher normalized RMS displacement, divided by (V/N)^(1/3)",
            "matcher": {"class": "pymatgen StructureMatcher", **asdict(matcher)},
            "smact_rules": smact_rules,
            "fingerprint_check": fingerprint_check,
        }
    )
    return CSPResult(
        metrics=metrics, per_structure=tally.per_structure, per_reference=tally.per_reference
    )


@dataclass
class _Pairing:
    """Generated frames grouped by reference (frame indices, the first k each)."""

    groups: list[list[int]]
    k_used: int
    unpaired: int
    missing_id: int


def _pair_frames(
    generated_ids: Sequence[str | None], reference_ids: Sequence[str], k: int | None
) -> _Pairing:
    """The frames of each reference by ``material_id``; frames of unknown or no id counted."""
    ref_index = {mid: i for i, mid in enumerate(reference_ids)}
    groups: list[list[int]] = [[] for _ in reference_ids]
    unpaired = 0
    missing_id = 0
    for fi, mid in enumerate(generated_ids):
        if mid is None:
            missing_id += 1
        elif mid in ref_index:
            groups[ref_index[mid]].append(fi)
        else:
            unpaired += 1
    if k is not None:
        groups = [g[:k] for g in groups]
    k_used = max((len(g) for g in groups), default=0)
    return _Pairing(groups, k_used, unpaired, missing_id)


@dataclass
class _Tally:
    """Best RMS distance per reference (two validity conventions), the per-row tables and
    the validity counts of the evaluated frames."""

    best_pred_only: list[float | None] = field(default_factory=list)
    best_both: list[float | None] = field(default_factory=list)
    per_structure: list[dict[str, Any]] = field(default_factory=list)
    per_reference: list[dict[str, Any]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    n_eval: int = 0
    n_valid: int = 0
    n_comp: int = 0
    n_struct: int = 0


def _tally(
    results: list[dict[str, Any]],
    groups: list[list[int]],
    reference_ids: Sequence[str],
    require_ref: bool,
) -> _Tally:
    """Best-of-k per reference and one row per reference and per evaluated frame."""
    t = _Tally()
    for r, res in enumerate(results):
        rms = [s["rms_dist"] for s in res["samples"]]
        hits = [x for x in rms if x is not None]
        b = min(hits) if hits else None
        t.best_pred_only.append(b)
        t.best_both.append(b if res["ref_valid"] else None)
        t.per_reference.append(
            {
                "material_id": reference_ids[r],
                "num_samples": len(rms),
                "reference_valid": res["ref_valid"],
                "reference_invalid_reason": res["ref_reason"],
                "matched": (b is not None) and (res["ref_valid"] or not require_ref),
                "rms_dist": b,
                "best_sample_index": rms.index(b) if b is not None else None,
            }
        )
        for j, (fi, s) in enumerate(zip(groups[r], res["samples"])):
            t.n_eval += 1
            t.n_valid += s["valid"]
            t.n_comp += s["comp_valid"]
            t.n_struct += s["struct_valid"]
            if s["invalid_reason"]:
                t.reasons[s["invalid_reason"]] += 1
            t.per_structure.append(
                {
                    "frame_index": fi,
                    "material_id": reference_ids[r],
                    "sample_index": j,
                    "valid": s["valid"],
                    "comp_valid": s["comp_valid"],
                    "struct_valid": s["struct_valid"],
                    "invalid_reason": s["invalid_reason"],
                    "matched": s["rms_dist"] is not None,
                    "rms_dist": s["rms_dist"],
                    "reference_valid": res["ref_valid"],
                }
            )
    t.per_structure.sort(key=lambda row: row["frame_index"])
    return t


def _csp_metrics(
    t: _Tally,
    results: list[dict[str, Any]],
    pairing: _Pairing,
    require_ref: bool,
    n_ref: int,
    n_generated: int,
) -> dict[str, Any]:
    """The summary of :func:`evaluate_csp` (all but the settings)."""
    rate_p, rmse_p, nm_p = _summary(t.best_pred_only)
    rate_b, rmse_b, nm_b = _summary(t.best_both)
    rate, rmse, nm = (rate_b, rmse_b, nm_b) if require_ref else (rate_p, rmse_p, nm_p)
    n_ref_invalid = sum(not x["ref_valid"] for x in results)
    n_eval = t.n_eval
    return {
        "task": "csp",
        "match_rate": rate,
        "rmse": rmse,
        "num_matched": nm,
        "convention": (
            "DiffCSP RecEval: generated and reference must be valid"
            if require_ref
            else "DiffCSP RecEvalBatch / CDVAE RecEval: generated must be valid"
        ),
        "match_rate_pred_validity_only": rate_p,
        "rmse_pred_validity_only": rmse_p,
        "match_rate_pred_and_reference_validity": rate_b,
        "rmse_pred_and_reference_validity": rmse_b,
        "k": pairing.k_used,
        "num_references": n_ref,
        "num_references_without_samples": sum(1 for g in pairing.groups if not g),
        "num_references_invalid": n_ref_invalid,
        # a reference whose own composition is SMACT-invalid cannot be matched by a valid
        # crystal of that composition: the best score the literature's rule allows
        "max_match_rate_given_invalid_references": (
            (n_ref - n_ref_invalid) / n_ref if n_ref else None
        ),
        "match_rate_over_valid_references": (
            sum(b is not None for b, x in zip(t.best_both, results) if x["ref_valid"])
            / (n_ref - n_ref_invalid)
            if n_ref > n_ref_invalid
            else None
        ),
        "num_references_unparsable": sum(not x["ref_parsed"] for x in results),
        "unparsable_reference_ids": [  # counted as unmatched references
            r["material_id"] for r, x in zip(t.per_reference, results, strict=True)
            if not x["ref_parsed"]],
        "num_generated_frames": n_generated,
        "num_generated_evaluated": n_eval,
        "num_generated_unpaired": pairing.unpaired,
        "num_generated_without_id": pairing.missing_id,
        "generated_validity": t.n_valid / n_eval if n_eval else None,
        "generated_comp_validity": t.n_comp / n_eval if n_eval else None,
        "generated_struct_validity": t.n_struct / n_eval if n_eval else None,
        "generated_invalid_reasons": dict(t.reasons),
    }


def csp_match_rate(
    generated: Sequence,
    references: Sequence,
    matcher: MatcherConfig = MatcherConfig(),
    workers: int = 1,
    progress: bool = False,
) -> CSPResult:
    """Convenience: one generated pymatgen structure per reference (same order), k = 1."""
    from matgen.evaluation._io import generated_from_structures, reference_from_structures

    if len(generated) != len(references):
        raise ValueError("generated and references must have the same length")
    ids = [str(i) for i in range(len(references))]
    return evaluate_csp(
        generated_from_structures(generated, ids),
        reference_from_structures(references, ids),
        matcher=matcher,
        workers=workers,
        progress=progress,
    )
