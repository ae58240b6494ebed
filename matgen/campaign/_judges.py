"""Who produced each number of the lab export: the scorer's MLIP, or the oracle (an MLIP, DFT,
a lab, a dataset), per candidate and per number.

The scorer's stability numbers (``e_above_hull``, ...) get a ``<name>_judge`` column naming the
MLIP; the oracle's labels (``oracle_e_above_hull``, ...) get ``oracle_<name>_judge`` with the
source each label was stored under (``dft:gpaw-pbe``, ``mlip:chgnet:fmax=0.05``, ``lab``, ...).
A candidate the oracle could not measure gets ``oracle_failure`` (e.g. the DFT status).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from matgen.campaign._schema import candidates, labels
from matgen.campaign._store import CampaignStore

#: Stability numbers whose judge the export names.
STABILITY = ("e_above_hull", "e_form_per_atom", "energy_per_atom")


def scorer_judge(cfg: dict[str, Any]) -> str:
    """The scorer's name as a judge: its MLIP (``chgnet``, ``sevennet``, ``sevennet-0``) or
    ``dataset``."""
    sc = cfg.get("scorer") or {}
    if sc.get("kind", "surrogates") == "surrogates":
        return str(sc.get("mlip") or "sevennet")
    return "dataset"


def label_sources(store: CampaignStore) -> dict[str, dict[str, str]]:
    """``{candidate_id: {label name: source}}`` (the oracle or import that wrote each label)."""
    q = (
        select(labels.c.candidate_id, labels.c.name, labels.c.source)
        .join(candidates, candidates.c.id == labels.c.candidate_id)
        .where(candidates.c.campaign_id == store.campaign_id)
    )
    out: dict[str, dict[str, str]] = {}
    with store.engine.connect() as conn:
        for cid, name, source in conn.execute(q).all():
            out.setdefault(cid, {})[name] = source
    return out


def oracle_failures(store: CampaignStore) -> dict[str, str]:
    """``{candidate_id: why}`` of the submissions the oracle failed on."""
    return {s["candidate_id"]: s.get("detail") or "failed"
            for s in store.submissions(status="failed")}


def add_judges(row: dict[str, Any], scorer: str, sources: dict[str, str],
               failure: str | None) -> None:
    """Add the judge columns of one export row (in place)."""
    for k in STABILITY:
        if row.get(k) is not None:
            row[f"{k}_judge"] = scorer
        if row.get(f"oracle_{k}") is not None:
            row[f"oracle_{k}_judge"] = sources.get(k, "")
    if failure:
        row["oracle_failure"] = failure


def describe_judge_column(col: str) -> tuple[str, str] | None:
    """(unit, meaning) of a judge column, None for other columns."""
    if col == "oracle_failure":
        return "", ("why the oracle gave no number for it (for the DFT oracle the calculation's "
                    "status: scf_not_converged, timeout, ...)")
    if not col.endswith("_judge"):
        return None
    what = col.removesuffix("_judge")
    if what.startswith("oracle_"):
        return "", (f"who measured {what}: the oracle's label source (dft:gpaw-pbe = GPAW PBE "
                    "DFT; mlip:<name>:fmax=... = an MLIP relaxation; lab = an imported result)")
    return "", f"who produced {what}: the scorer's MLIP (or dataset for a simulated scorer)"


def judge_text(cfg: dict[str, Any]) -> dict[str, str]:
    """Who judged what, in words: ``scorer`` (predictions) and ``oracle`` (labels)."""
    sc, orc = cfg.get("scorer") or {}, cfg.get("oracle") or {}
    if sc.get("kind", "surrogates") == "surrogates":
        relax = (f"relaxed {sc.get('relax_steps', 100)} steps to fmax {sc.get('fmax', 0.1)} "
                 "eV/Å" if sc.get("relax", True) else "unrelaxed single point")
        name = {"chgnet": "CHGNet", "sevennet": "SevenNet-l3i5", "sevennet-0": "SevenNet-0"
                }.get(scorer_judge(cfg), "MLIP")
        scorer = (f"{name} MLIP, {relax}, against the MP reference hull; properties from "
                  "matgen's property predictors")
    else:
        scorer = f"noisy labels looked up in {Path(str(sc.get('labels_csv'))).name} (simulation)"
    kind = orc.get("kind", "dataset")
    if kind == "mlip":
        oracle = (f"{orc.get('mlip', 'chgnet')} MLIP relaxation to fmax {orc.get('fmax')} eV/Å, "
                  f"at most {orc.get('steps')} steps, against the MP reference hull -- not DFT")
    elif kind == "dft":
        oracle = ("GPAW PBE DFT (dft:gpaw-pbe), e_above_hull on the GPAW hull of MP's competing "
                  "phases, plain PBE without MP2020 corrections")
    elif kind == "lab":
        oracle = "lab results imported with matgen campaign import-results"
    else:
        oracle = f"labels of the dataset {Path(str(orc.get('csv'))).name} (simulated oracle)"
    return {"scorer": scorer, "oracle": oracle}
