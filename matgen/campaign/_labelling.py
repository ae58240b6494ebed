"""Labels from the oracle: sending a round's pending submissions (once per request id) and
importing a lab's results file (with corrections recorded in the label history)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from matgen.campaign._components import finite
from matgen.campaign._oracles import Oracle
from matgen.campaign._results import ResultsFile
from matgen.campaign._store import CampaignStore, CandidateRow


@dataclass
class ImportReport:
    """What an import did: rows ``accepted`` (candidates labelled now), ``filled`` (labels
    added to a labelled candidate), ``corrected``, ``unchanged``, and one line per rejected
    row in ``errors`` (``rejected`` counts them)."""

    accepted: int = 0
    filled: int = 0
    corrected: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def outcome(values: Mapping[str, float]) -> tuple[str, str | None]:
    """Submission status for an oracle answer: ``done`` with a finite value, else ``failed``
    (a lab import can still label it)."""
    if any(finite(v) is not None for v in values.values()):
        return "done", None
    return "failed", "the oracle returned no finite value"


def oracle_row(c: CandidateRow) -> dict[str, Any]:
    """What an oracle is told about a candidate."""
    sc = c.scores or {}
    return {
        "id": c.id,
        "cif": c.cif,
        "source_id": c.source_id,
        "formula": c.formula,
        "spacegroup": c.spacegroup,
        "relaxed_cif": sc.get("relaxed_cif"),
    }


def send_pending(
    store: CampaignStore,
    oracle: Oracle,
    cands: Mapping[str, CandidateRow],
    index: int,
    request_prefix: str,
    on_send: Callable[[list[str]], None] | None,
) -> None:
    """Call the oracle for round ``index``'s pending submissions.

    Each pending submission gets an oracle request id (``request_prefix`` + a random part),
    committed before the call; the rows carry it (``request_id``). A crash after the oracle
    answered but before the labels were written leaves the submissions pending with their id,
    and the next run re-sends that same request rather than a new one, so an oracle that keeps
    its answers by request id (idempotency key) does its work for a candidate once.
    """
    pending = store.submissions(index, status="pending")
    if not pending:
        return
    fresh = [s["candidate_id"] for s in pending if not s.get("request_id")]
    if fresh:
        with store.transaction() as conn:
            store.assign_request(conn, fresh, f"{request_prefix}{uuid.uuid4().hex[:12]}")
    groups: dict[str, list[str]] = {}
    for s in store.submissions(index, status="pending"):
        groups.setdefault(s["request_id"], []).append(s["candidate_id"])
    for rid, ids in groups.items():
        rows = [{**oracle_row(cands[cid]), "request_id": rid} for cid in ids]
        if on_send is not None:
            on_send(ids)
        result = oracle.request(rows, index)
        with store.transaction() as conn:
            for cid in ids:
                if cid not in result:
                    store.set_submission(conn, cid, "sent", expect=["pending"])
                    continue
                status, detail = outcome(result[cid])
                if status == "failed":  # an oracle that says why (the DFT status) is heard
                    detail = (getattr(oracle, "failures", None) or {}).get(cid, detail)
                if not store.set_submission(conn, cid, status, detail, expect=["pending"]):
                    continue  # labelled meanwhile (an import): keep that
                store.add_labels(conn, cid, result[cid], oracle.name)


def import_rows(
    store: CampaignStore,
    parsed: ResultsFile,
    csv_path: str,
    campaign: str,
    correct: bool = False,
    reason: str | None = None,
) -> tuple[ImportReport, set[int]]:
    """Write a parsed results file's rows in one transaction (see
    :meth:`matgen.campaign.Campaign.import_results` for the rules); the report and the rounds
    that got labels."""
    rep = ImportReport(errors=list(parsed.errors))
    touched: set[int] = set()
    why = f"; {reason}" if reason else ""
    with store.transaction() as conn:
        known, subs, have = store.import_state(conn, [r.candidate_id for r in parsed.rows])
        for row in parsed.rows:
            cid, where = row.candidate_id, f"{csv_path}:{row.line}: {row.candidate_id}"
            s = subs.get(cid)
            if cid not in known:
                rep.errors.append(f"{where}: no such candidate in campaign {campaign!r}")
                continue
            if s is None:
                rep.errors.append(f"{where}: never sent to the oracle (not selected)")
                continue
            old = {k: v for k, v in have.get(cid, {}).items() if v is not None}
            differ = {k: v for k, v in row.values.items() if k in old and old[k] != v}
            if differ and not correct:
                rep.errors.append(
                    where
                    + ": already labelled "
                    + ", ".join(f"{k}={old[k]:g} (file: {v:g})" for k, v in differ.items())
                    + "; re-import with --correct to replace"
                )
                continue
            new = {k: v for k, v in row.values.items() if k not in old}
            if not new and not differ:
                rep.unchanged += 1
                continue
            first = s["status"] != "done"
            src = f"{csv_path} line {row.line}{why}"
            for k, v in new.items():
                store.write_label(conn, cid, k, v, "lab", "import" if first else "fill", src)
            for k, v in differ.items():
                store.write_label(conn, cid, k, v, "lab", "correct", src)
            if first:
                store.set_submission(conn, cid, "done", detail=f"imported {src}"[:300])
                touched.add(s["round_index"])
                rep.accepted += 1
            elif differ:
                rep.corrected += 1
            else:
                rep.filled += 1
    rep.rejected = len(rep.errors)
    return rep, touched
