"""The campaign state schema (SQLAlchemy Core tables), the round's step order, typed
candidate rows and the SQLite connection settings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
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
    inspect,
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
    Column("config_version", Integer),  # the campaign config version the round started with
    Column("generator_version", String(200)),  # the generator version its pool came from
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
    # the oracle request that carries it, recorded before the oracle is called: a request cut
    # off by a crash is re-sent under the same id (the oracle can answer it from its records)
    Column("request_id", String(80)),
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

label_history = Table(
    "label_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("candidate_id", ForeignKey("candidates.id"), nullable=False),
    Column("name", String(80), nullable=False),
    Column("old_value", Float),
    Column("new_value", Float),
    Column("action", String(20), nullable=False),  # import | fill | correct
    Column("source", String(80), nullable=False),
    Column("detail", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config", JSON, nullable=False),
    Column("changes", Text),
    Column("from_round", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("campaign_id", "version", name="uq_config_version"),
)

#: Generator versions made by fine-tuning on the labels (``generator.finetune``): at most one
#: per round, recorded only once its checkpoint folder is complete.
generator_versions = Table(
    "generator_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("round_index", Integer, nullable=False),  # the first round that generates with it
    Column("version", String(200), nullable=False),
    Column("checkpoint", Text),  # folder of the weights (NULL: the configured generator)
    Column("parent", String(200)),
    Column("details", JSON),  # hits, replay rows, steps, loss, diversity guard
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("campaign_id", "round_index", name="uq_generator_round"),
)

leases = Table(
    "leases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False),
    Column("key", String(80), nullable=False),
    Column("owner", String(200)),  # host:pid:token, NULL when free
    Column("expires_at", Float, nullable=False),  # unix seconds
    Column("acquired_at", Float),
    Column("previous_owner", String(200)),
    UniqueConstraint("campaign_id", "key", name="uq_lease"),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, eq=False)
class CandidateRow(Mapping[str, Any]):
    """One row of the ``candidates`` table.

    Read its columns as attributes (``c.id``, ``c.scores``); it is also a read-only mapping of
    the same names (``c["id"]``, ``c.get("scores")``, ``{**c, ...}``) for code written against
    the plain dicts the store used to return.
    """

    id: str
    campaign_id: int
    round_index: int
    position: int
    source_id: str | None
    formula: str
    reduced_formula: str
    spacegroup: str | None
    cif: str
    status: str  # generated | invalid | duplicate | scored
    reason: str | None
    scores: dict[str, Any] | None
    selected: bool
    selected_round: int | None
    rank: int | None
    acq_value: float | None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> CandidateRow:
        return cls(**{k: row[k] for k in _CANDIDATE_FIELDS})

    def __getitem__(self, key: str) -> Any:
        if key not in _CANDIDATE_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_CANDIDATE_FIELDS)

    def __len__(self) -> int:
        return len(_CANDIDATE_FIELDS)


_CANDIDATE_FIELDS = tuple(f.name for f in fields(CandidateRow))
assert set(_CANDIDATE_FIELDS) == {c.name for c in candidates.columns}


def add_missing_columns(engine: Engine) -> None:
    """Add nullable columns that a store written by an older matgen lacks (ALTER TABLE)."""
    with engine.begin() as conn:
        insp = inspect(conn)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have and col.nullable:
                    kind = col.type.compile(dialect=engine.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}')


def sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin_immediate
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL waits for other openers
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")
