"""Crash-safe campaign state: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Tables: ``campaigns``, ``rounds``, ``candidates``, ``submissions``, ``labels``. Each step of a
round writes its outputs and advances the round's status in ONE transaction, so a crash leaves
the round either before or after the step, never half-way. Oracle submissions are recorded
(``UNIQUE(candidate_id)``) before anything is sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

#: The round's step status machine, in order.
STEPS: tuple[str, ...] = (
    "started",
    "generated",
    "deduped",
    "scored",
    "selected",
    "submitted",
    "labelled",
    "updated",
    "reported",
)

metadata = MetaData()

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("config", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

rounds = Table(
    "rounds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("index", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("model_version", String(200)),
    Column("hull_version", String(200)),
    Column("acquisition", String(40)),
    Column("metrics", JSON),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("campaign_id", "index", name="uq_round"),
)

candidates = Table(
    "candidates",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("round_index", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("source_id", String(200)),
    Column("formula", String(200), nullable=False),
    Column("reduced_formula", String(200), nullable=False),
    Column("spacegroup", String(40)),
    Column("cif", Text, nullable=False),
    Column("status", String(20), nullable=False),  # generated | invalid | duplicate | scored
    Column("reason", String(300)),
    Column("scores", JSON),
    Column("selected", Boolean, nullable=False, default=False),
    Column("selected_round", Integer),
    Column("rank", Integer),
    Column("acq_value", Float),
    UniqueConstraint("campaign_id", "round_index", "position", name="uq_candidate_pos"),
)

submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate_id", ForeignKey("candidates.id"), nullable=False, unique=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("round_index", Integer, nullable=False),
    Column("oracle", String(40), nullable=False),
    Column("status", String(20), nullable=False),  # pending | sent | done | failed
    Column("detail", String(300)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate_id", ForeignKey("candidates.id"), nullable=False),
    Column("name", String(80), nullable=False),
    Column("value", Float),
    Column("source", String(80), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("candidate_id", "name", name="uq_label"),
)


def _now() -> datetime:
    return datetime.now(UTC)


class StepConflict(RuntimeError):
    """A step was asked to advance a round that is not in the expected state."""


class CampaignStore:
    """Campaign state in a SQL database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db`` or ``postgresql+psycopg://...``).
        name: campaign name (created on first use).
        config: the campaign config as JSON-able dict (stored on creation).
    """

    def __init__(self, url: str, name: str, config: dict[str, Any] | None = None) -> None:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self.name = name
        with self.engine.begin() as conn:
            row = conn.execute(select(campaigns.c.id).where(campaigns.c.name == name)).first()
            if row is None:
                conn.execute(
                    insert(campaigns).values(name=name, config=config or {}, created_at=_now())
                )
                row = conn.execute(select(campaigns.c.id).where(campaigns.c.name == name)).first()
        self.campaign_id: int = int(row[0])

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self):
        """One atomic transaction (commit on success, roll back on any exception)."""
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

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
                        started_at=_now(),
                        updated_at=_now(),
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
            .values(status=step, updated_at=_now(), **fields)
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
    ) -> list[dict[str, Any]]:
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
            return [dict(r._mapping) for r in conn.execute(q).all()]

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
                        "created_at": _now(),
                        "updated_at": _now(),
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

    def set_submission(
        self, conn: Connection, candidate_id: str, status: str, detail: str | None = None
    ) -> None:
        conn.execute(
            update(submissions)
            .where(submissions.c.candidate_id == candidate_id)
            .values(status=status, detail=detail, updated_at=_now())
        )

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
                "created_at": _now(),
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
                    "metrics": r["metrics"] or {},
                }
            )
        return {"campaign": self.name, "url": self.url, "rounds": out}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def dumps(obj: Any) -> str:
    """JSON for metrics/scores (NaN -> null)."""
    return json.dumps(obj, default=float, allow_nan=False)
