"""Per-round guards: surrogate exploitation, diversity collapse, stability-synthesizability gap."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matgen.acquisition import Target
    from matgen.campaign._config import CampaignConfig
    from matgen.campaign._store import CampaignStore


def _smact_ok(formula: str) -> bool:
    try:
        from smact.screening import smact_validity

        return bool(smact_validity(formula))
    except Exception:  # noqa: BLE001 - unknown elements etc. count as not valid
        return False


def prototype(cif: str, spacegroup: str | None) -> str:
    """A cheap prototype label: anonymised reduced formula + space group."""
    from pymatgen.core import Structure

    s = Structure.from_str(cif, fmt="cif")
    return f"{s.composition.anonymized_formula}|{spacegroup or '?'}"


def round_metrics(
    batch: Sequence[dict[str, Any]],
    labels: dict[str, dict[str, float | None]],
    properties: Sequence[str],
    hit_fn,
    guards,
) -> dict[str, Any]:
    """Metrics of one selected batch.

    Args:
        batch: selected candidate rows (with ``scores``, ``reduced_formula``, ``cif``, ...).
        labels: oracle labels by candidate id.
        properties: objective properties.
        hit_fn: ``dict[str, float] -> bool``: does a label set satisfy every window?
        guards: :class:`~matgen.campaign.GuardConfig`.

    Returns:
        JSON-able dict: ``exploitation`` (per property: predicted mean, oracle mean, bias, MAE,
        mean |z|), ``diversity`` (distinct formulas / prototypes as fractions of the batch),
        ``stability_synthesizability`` (share within ``hull_window`` of the hull, share
        SMACT-valid, share both, gap), ``hits`` (oracle hits in the batch) and ``alerts``.
    """
    n = len(batch)
    out: dict[str, Any] = {"batch_size": n, "alerts": []}
    if n == 0:
        return out
    expl = {}
    for p in properties:
        pred, std, true = [], [], []
        for c in batch:
            sc = c.get("scores") or {}
            lab = labels.get(c["id"], {})
            if sc.get(p) is None or lab.get(p) is None:
                continue
            pred.append(sc[p])
            std.append(sc.get(f"{p}_std") or np.nan)  # a scorer without a std gives no z
            true.append(lab[p])
        if pred:
            pr, sd, tr = (np.asarray(v, dtype=float) for v in (pred, std, true))
            has = np.isfinite(sd) & (sd > 0)
            z = float(np.mean(np.abs(pr - tr)[has] / sd[has])) if has.any() else None
            expl[p] = {
                "n": len(pr),
                "predicted_mean": float(pr.mean()),
                "oracle_mean": float(tr.mean()),
                "bias": float((pr - tr).mean()),
                "mae": float(np.abs(pr - tr).mean()),
                "mean_abs_z": z,
            }
            if z is not None and z > guards.max_exploitation_z:
                out["alerts"].append(
                    f"surrogate exploitation on {p}: selected batch's mean |z| = {z:.2f} "
                    f"> {guards.max_exploitation_z}"
                )
    out["exploitation"] = expl
    formulas = {c["reduced_formula"] for c in batch}
    protos = {prototype(c["cif"], c.get("spacegroup")) for c in batch}
    div = {
        "distinct_formulas": len(formulas),
        "distinct_prototypes": len(protos),
        "formula_fraction": len(formulas) / n,
        "prototype_fraction": len(protos) / n,
    }
    out["diversity"] = div
    if div["formula_fraction"] < guards.min_distinct_fraction:
        out["alerts"].append(
            f"diversity collapse: {len(formulas)} distinct compositions in a batch of {n}"
        )
    stable, smact_ok, both = 0, 0, 0
    for c in batch:
        lab = labels.get(c["id"], {})
        ehull = lab.get("e_above_hull")
        if ehull is None:
            ehull = (c.get("scores") or {}).get("e_above_hull")
        st = ehull is not None and ehull <= guards.hull_window
        sm = _smact_ok(c["reduced_formula"])
        stable += st
        smact_ok += sm
        both += st and sm
    ssg = {
        "stable_fraction": stable / n,
        "smact_fraction": smact_ok / n,
        "stable_and_smact_fraction": both / n,
        "gap": (stable - both) / n,
    }
    out["stability_synthesizability"] = ssg
    labelled = [labels[c["id"]] for c in batch if c["id"] in labels]
    out["labelled"] = len(labelled)
    out["hits"] = int(sum(bool(hit_fn(lab)) for lab in labelled))
    out["hit_rate"] = out["hits"] / n
    return out


def inside_windows(targets: Sequence[Target], lab: Mapping[str, float | None]) -> bool:
    """Whether labels put a candidate inside every window target (a missing label is not)."""
    for t in targets:
        if t.minimum is None and t.maximum is None:
            continue
        v = lab.get(t.name)
        if (
            v is None
            or (t.minimum is not None and v < t.minimum)
            or (t.maximum is not None and v > t.maximum)
        ):
            return False
    return True


def is_suspect_candidate(c: Mapping) -> bool:
    """A candidate the scorer put more than 0.05 eV/atom below the known hull (the score
    row's ``suspect`` flag, or its ``e_above_hull`` for scorers that set no flag)."""
    from matgen.surrogates._score import is_suspect

    sc = c.get("scores") or {}
    return bool(sc.get("suspect")) or is_suspect(sc.get("e_above_hull"))


def campaign_metrics(
    store: CampaignStore,
    index: int,
    batch: Sequence[Mapping[str, Any]],
    cfg: CampaignConfig,
    hit_fn: Callable[[Mapping[str, float | None]], bool],
) -> dict[str, Any]:
    """:func:`round_metrics` of round ``index``'s selected ``batch``, plus the round's counts
    (generated, invalid, duplicates, scored, suspects) and the cumulative hits and labels."""
    labels = store.labels()
    suspects = [c for c in batch if is_suspect_candidate(c)]
    # the MLIP cannot vouch for a suspect: without an oracle label it does not count as
    # stable (round_metrics falls back to the scorer's e_above_hull for unlabelled ones)
    drop = {c["id"] for c in suspects if c["id"] not in labels}
    batch = [
        c
        if c["id"] not in drop
        else {
            **c,
            "scores": {k: v for k, v in (c.get("scores") or {}).items() if k != "e_above_hull"},
        }
        for c in batch
    ]
    m = round_metrics(batch, labels, cfg.property_names(), hit_fn, cfg.guards)
    m["suspects"] = len(suspects)
    m["suspects_unlabelled"] = len(drop)
    cands = store.candidates(index)
    m["generated"] = len(cands)
    m["invalid"] = sum(c["status"] == "invalid" for c in cands)
    m["duplicates"] = sum(c["status"] == "duplicate" for c in cands)
    m["scored"] = sum(c["status"] == "scored" for c in cands)
    if cfg.generator.finetune is not None:  # the learning generator's version and guard
        from matgen.campaign._finetune import generator_metrics

        m["generator"] = generator_metrics(store, index)
        if guard := (m["generator"].get("finetuned") or {}).get("guard"):
            m["alerts"].append(guard)  # the diversity guard tripped before this round
    m["cumulative_hits"] = int(sum(hit_fn(v) for v in labels.values()))
    m["cumulative_labelled"] = len(labels)
    return m
