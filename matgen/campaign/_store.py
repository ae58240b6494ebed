"""Crash-safe campaign state: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Tables: ``campaigns``, ``rounds``, ``candidates``, ``submissions``, ``labels``, plus
``label_history`` (every lab import and correction of a label), ``config_versions`` (each
accepted config of the campaign; rounds record the version they started with) and ``leases``
(who is working on which step). Each step of a round writes its outputs and advances the
round's status in ONE transaction, so a crash leaves the round either before or after the step,
never half-way. Oracle submissions are recorded (``UNIQUE(candidate_id)``) before anything is
sent, and so is the id of the oracle request that carries them. On SQLite a write transaction
starts with ``BEGIN IMMEDIATE``: read-then-write steps (a lease claim, an import) are
serialised between processes instead of failing with "database is locked" on the upgrade from
reader to writer.

The tables are in :mod:`matgen.campaign._schema`, the leases (who works on which step) in
:mod:`matgen.campaign._leases`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from matgen.campaign._leases import Leases, owner_alive
from matgen.campaign._schema import (
    STEPS,
    CandidateRow,
    add_missing_columns,
    campaigns,
    candidates,
    config_versions,
    label_history,
    labels,
    metadata,
    rounds,
    sqlite_begin,
    sqlite_pragmas,
    submissions,
    utcnow,
)

__all__ = [
    "STEPS",
    "CampaignStore",
    "CandidateRow",
    "StepConflict",
    "StoreError",
    "owner_alive",
    "rounds",
    "submissions",
]

log = logging.getLogger("matgen.campaign")


class StepConflict(RuntimeError):
    """A step was asked to advance a round that is not in the expected state."""


class StoreError(RuntimeError):
    """The state database cannot be opened or read (the message names the file and the fix)."""


class CampaignStore(Leases):
    """Campaign state in a SQL database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db`` or ``postgresql+psycopg://...``).
        name: campaign name (created on first use).
        config: the campaign config as JSON-able dict (stored on creation).
    """

    def __init__(self, url: str, name: str, config: dict[str, Any] | None = None) -> None:
        self.path: Path | None = None
        if url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :])
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)
            event.listen(self.engine, "begin", sqlite_begin)
        self.name = name
        # several runs opening one new database at once: the schema set-up upgrades a read to
        # a write, which SQLite answers with "database is locked" at once; it is idempotent,
        # so it is tried again (seen in the chaos test's concurrent starts)
        for attempt in range(40):
            try:
                row = self._open(name, config)
                break
            except OperationalError as exc:
                if "locked" not in str(exc) or attempt == 39:
                    self.engine.dispose()
                    raise self._unreadable(exc) from None
                time.sleep(0.05 + 0.1 * random.random())
            except DatabaseError as exc:
                self.engine.dispose()
                raise self._unreadable(exc) from None
        self.campaign_id: int = int(row[0])

    def _open(self, name: str, config: dict[str, Any] | None):
        if self.path is not None and self.path.exists():
            self._check_integrity()
        metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        with self.transaction() as conn:
            row = conn.execute(select(campaigns.c.id).where(campaigns.c.name == name)).first()
            if row is None:
                conn.execute(
                    insert(campaigns).values(name=name, config=config or {}, created_at=utcnow())
                )
                row = conn.execute(select(campaigns.c.id).where(campaigns.c.name == name)).first()
        return row

    def _unreadable(self, exc: Exception) -> StoreError:
        why = str(getattr(exc, "orig", exc)).splitlines()[0]
        where = self.path if self.path is not None else self.url
        fix = (
            "move it (and its -wal/-shm files) aside to start the campaign afresh, or "
            "restore a backup"
            if self.path is not None
            else "check the database server"
        )
        return StoreError(f"{where}: not a readable campaign state database ({why}); {fix}")

    def _check_integrity(self) -> None:
        with self.engine.connect() as conn:
            res = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check(1)").all()]
        if res != ["ok"]:
            raise DatabaseError("PRAGMA quick_check", None, Exception(f"corrupt: {res[0]}"))

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self):
        """One atomic transaction (commit on success, roll back on any exception).

        On SQLite it takes the write lock at its start (``BEGIN IMMEDIATE``), so its reads
        and writes see no other writer in between; plain reads elsewhere stay lock-free.
        """
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("immediate", None)

    def dispose(self) -> None:
        """Close the database connections (the store can be used again: it reconnects)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    # ------------------------------------------------------------------ rounds
    def round(self, index: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rounds).where(
                    rounds.c.campaign_id == self.campaign_id, rounds.c.index == index
                )
            ).first()
        return dict(row._mapping) if row else None

    def rounds(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(rounds)
                .where(rounds.c.campaign_id == self.campaign_id)
                .order_by(rounds.c.index)
            ).all()
        return [dict(r._mapping) for r in rows]

    def ensure_round(self, index: int, seed: int) -> dict[str, Any]:
        """Create round ``index`` (status ``started``) unless it exists; return it."""
        with self.transaction() as conn:
            exists = conn.execute(
                select(rounds.c.id).where(
                    rounds.c.campaign_id == self.campaign_id, rounds.c.index == index
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(rounds).values(
                        campaign_id=self.campaign_id,
                        index=index,
                        status="started",
                        seed=seed,
                        config_version=self._config_version(conn),
                        started_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
        return self.round(index)  # type: ignore[return-value]

    def status_reached(self, index: int, step: str) -> bool:
        """Whether round ``index`` has completed ``step`` (or a later one)."""
        r = self.round(index)
        return r is not None and STEPS.index(r["status"]) >= STEPS.index(step)

    def advance(self, conn: Connection, index: int, step: str, **fields: Any) -> None:
        """Move round ``index`` to ``step`` inside ``conn``'s transaction.

        Only the step right after the current status is accepted (compare-and-set), so two
        workers racing on one step cannot both commit it.

        Raises:
            StepConflict: the round is not at the preceding step.
        """
        prev = STEPS[STEPS.index(step) - 1]
        res = conn.execute(
            update(rounds)
            .where(
                rounds.c.campaign_id == self.campaign_id,
                rounds.c.index == index,
                rounds.c.status == prev,
            )
            .values(status=step, updated_at=utcnow(), **fields)
        )
        if res.rowcount != 1:
            raise StepConflict(f"round {index}: cannot move to {step!r} (expected {prev!r})")

    # ------------------------------------------------------------------ candidates
    def add_candidates(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(
                insert(candidates),
                [{"campaign_id": self.campaign_id, "selected": False, **r} for r in rows],
            )

    def candidates(
        self,
        round_index: int | None = None,
        status: str | Iterable[str] | None = None,
        selected: bool | None = None,
    ) -> list[CandidateRow]:
        q = select(candidates).where(candidates.c.campaign_id == self.campaign_id)
        if round_index is not None:
            q = q.where(candidates.c.round_index == round_index)
        if status is not None:
            st = [status] if isinstance(status, str) else list(status)
            q = q.where(candidates.c.status.in_(st))
        if selected is not None:
            q = q.where(candidates.c.selected == selected)
        q = q.order_by(candidates.c.round_index, candidates.c.position)
        with self.engine.connect() as conn:
            return [CandidateRow.from_mapping(r._mapping) for r in conn.execute(q).all()]

    def update_candidate(self, conn: Connection, candidate_id: str, **fields: Any) -> None:
        conn.execute(update(candidates).where(candidates.c.id == candidate_id).values(**fields))

    # ------------------------------------------------------------------ submissions
    def record_submissions(
        self, conn: Connection, candidate_ids: Sequence[str], round_index: int, oracle: str
    ) -> int:
        """Insert a ``pending`` submission per candidate not yet submitted; return how many."""
        have = {
            r[0]
            for r in conn.execute(
                select(submissions.c.candidate_id).where(
                    submissions.c.candidate_id.in_(list(candidate_ids))
                )
            ).all()
        }
        new = [c for c in candidate_ids if c not in have]
        if new:
            conn.execute(
                insert(submissions),
                [
                    {
                        "candidate_id": c,
                        "campaign_id": self.campaign_id,
                        "round_index": round_index,
                        "oracle": oracle,
                        "status": "pending",
                        "created_at": utcnow(),
                        "updated_at": utcnow(),
                    }
                    for c in new
                ],
            )
        return len(new)

    def submissions(
        self, round_index: int | None = None, status: str | Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        q = select(submissions).where(submissions.c.campaign_id == self.campaign_id)
        if round_index is not None:
            q = q.where(submissions.c.round_index == round_index)
        if status is not None:
            st = [status] if isinstance(status, str) else list(status)
            q = q.where(submissions.c.status.in_(st))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(submissions.c.id)).all()]

    def assign_request(
        self, conn: Connection, candidate_ids: Sequence[str], request_id: str
    ) -> None:
        """Record ``request_id`` on pending submissions that have none (before the call)."""
        if candidate_ids:
            conn.execute(
                update(submissions)
                .where(
                    submissions.c.campaign_id == self.campaign_id,
                    submissions.c.candidate_id.in_(list(candidate_ids)),
                    submissions.c.status == "pending",
                    submissions.c.request_id.is_(None),
                )
                .values(request_id=request_id, updated_at=utcnow())
            )

    def set_submission(
        self,
        conn: Connection,
        candidate_id: str,
        status: str,
        detail: str | None = None,
        expect: Iterable[str] | None = None,
    ) -> bool:
        """Set a submission's status (only from a status in ``expect`` when given)."""
        q = update(submissions).where(submissions.c.candidate_id == candidate_id)
        if expect is not None:
            q = q.where(submissions.c.status.in_(list(expect)))
        res = conn.execute(q.values(status=status, detail=detail, updated_at=utcnow()))
        return res.rowcount == 1

    # ------------------------------------------------------------------ labels
    def add_labels(
        self, conn: Connection, candidate_id: str, values: dict[str, float | None], source: str
    ) -> None:
        """Insert labels of one candidate (an existing label of the same name is kept)."""
        have = {
            r[0]
            for r in conn.execute(
                select(labels.c.name).where(labels.c.candidate_id == candidate_id)
            ).all()
        }
        rows = [
            {
                "candidate_id": candidate_id,
                "name": k,
                "value": None if v is None or math.isnan(float(v)) else float(v),
                "source": source,
                "created_at": utcnow(),
            }
            for k, v in values.items()
            if k not in have
        ]
        if rows:
            conn.execute(insert(labels), rows)

    def labels(self) -> dict[str, dict[str, float | None]]:
        """``{candidate_id: {name: value}}`` for every labelled candidate of this campaign."""
        q = (
            select(labels.c.candidate_id, labels.c.name, labels.c.value)
            .join(candidates, candidates.c.id == labels.c.candidate_id)
            .where(candidates.c.campaign_id == self.campaign_id)
        )
        out: dict[str, dict[str, float | None]] = {}
        with self.engine.connect() as conn:
            for cid, name, value in conn.execute(q).all():
                out.setdefault(cid, {})[name] = value
        return out

    def import_state(
        self, conn: Connection, candidate_ids: Iterable[str]
    ) -> tuple[set[str], dict[str, dict[str, Any]], dict[str, dict[str, float | None]]]:
        """Inside ``conn``'s transaction: which of ``candidate_ids`` are this campaign's
        candidates, their submissions and their labels."""
        ids = sorted(set(candidate_ids))
        known: set[str] = set()
        subs: dict[str, dict[str, Any]] = {}
        labs: dict[str, dict[str, float | None]] = {}
        for k in range(0, len(ids), 500):
            part = ids[k : k + 500]
            known.update(
                r[0]
                for r in conn.execute(
                    select(candidates.c.id).where(
                        candidates.c.campaign_id == self.campaign_id, candidates.c.id.in_(part)
                    )
                )
            )
            for r in conn.execute(
                select(submissions).where(
                    submissions.c.campaign_id == self.campaign_id,
                    submissions.c.candidate_id.in_(part),
                )
            ):
                subs[r.candidate_id] = dict(r._mapping)
            for cid, name, value in conn.execute(
                select(labels.c.candidate_id, labels.c.name, labels.c.value).where(
                    labels.c.candidate_id.in_(part)
                )
            ):
                labs.setdefault(cid, {})[name] = value
        return known, subs, labs

    def write_label(
        self,
        conn: Connection,
        candidate_id: str,
        name: str,
        value: float,
        source: str,
        action: str,
        detail: str | None = None,
    ) -> None:
        """Insert or replace one label and append the change to ``label_history``."""
        old = conn.execute(
            select(labels.c.id, labels.c.value).where(
                labels.c.candidate_id == candidate_id, labels.c.name == name
            )
        ).first()
        if old is None:
            conn.execute(
                insert(labels).values(
                    candidate_id=candidate_id,
                    name=name,
                    value=value,
                    source=source,
                    created_at=utcnow(),
                )
            )
        else:
            conn.execute(
                update(labels)
                .where(labels.c.id == old[0])
                .values(value=value, source=source, created_at=utcnow())
            )
        conn.execute(
            insert(label_history).values(
                candidate_id=candidate_id,
                name=name,
                old_value=None if old is None else old[1],
                new_value=value,
                action=action,
                source=source,
                detail=(detail or "")[:500],
                created_at=utcnow(),
            )
        )

    def label_history(self, candidate_id: str | None = None) -> list[dict[str, Any]]:
        """The audit trail of imported and corrected labels, oldest first."""
        q = (
            select(label_history)
            .join(candidates, candidates.c.id == label_history.c.candidate_id)
            .where(candidates.c.campaign_id == self.campaign_id)
        )
        if candidate_id is not None:
            q = q.where(label_history.c.candidate_id == candidate_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(label_history.c.id))]

    # ------------------------------------------------------------------ config versions
    def stored_config(self) -> dict[str, Any]:
        """The config the campaign runs with now (the latest accepted version)."""
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    select(campaigns.c.config).where(campaigns.c.id == self.campaign_id)
                ).scalar_one()
                or {}
            )

    def _config_version(self, conn: Connection) -> int:
        """The current config version; version 1 (the stored config) is created on demand."""
        v = conn.execute(
            select(config_versions.c.version)
            .where(config_versions.c.campaign_id == self.campaign_id)
            .order_by(config_versions.c.version.desc())
        ).first()
        if v is not None:
            return int(v[0])
        cfg = conn.execute(
            select(campaigns.c.config).where(campaigns.c.id == self.campaign_id)
        ).scalar_one()
        conn.execute(
            insert(config_versions).values(
                campaign_id=self.campaign_id,
                version=1,
                config=cfg or {},
                changes=None,
                from_round=0,
                created_at=utcnow(),
            )
        )
        return 1

    def config_version(self) -> int:
        with self.transaction() as conn:
            return self._config_version(conn)

    def config_versions(self) -> list[dict[str, Any]]:
        self.config_version()
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    select(config_versions)
                    .where(config_versions.c.campaign_id == self.campaign_id)
                    .order_by(config_versions.c.version)
                )
            ]

    def record_config(self, config: dict[str, Any], changes: str, from_round: int) -> int:
        """Make ``config`` the campaign's config (a new version); return the version."""
        with self.transaction() as conn:
            v = self._config_version(conn) + 1
            conn.execute(
                insert(config_versions).values(
                    campaign_id=self.campaign_id,
                    version=v,
                    config=config,
                    changes=changes,
                    from_round=from_round,
                    created_at=utcnow(),
                )
            )
            conn.execute(
                update(campaigns).where(campaigns.c.id == self.campaign_id).values(config=config)
            )
        return v

    def summary(self) -> dict[str, Any]:
        """Counts per round for ``matgen campaign status``."""
        out = []
        allsel = self.candidates(selected=True)
        for r in self.rounds():
            cands = self.candidates(r["index"])
            subs = self.submissions(r["index"])
            out.append(
                {
                    "round": r["index"],
                    "status": r["status"],
                    "candidates": len(cands),
                    "scored": sum(c["status"] == "scored" for c in cands),
                    "selected": sum(c["selected_round"] == r["index"] for c in allsel),
                    "submissions": len(subs),
                    "labelled": sum(s["status"] == "done" for s in subs),
                    "failed": sum(s["status"] == "failed" for s in subs),
                    "config_version": r.get("config_version"),
                    "metrics": r["metrics"] or {},
                }
            )
        return {"campaign": self.name, "url": self.url, "rounds": out}
