"""The schema, as SQLAlchemy 2.0 models. Alembic migrations are the only way it changes.

A finding is a stable thing on an asset (unique ``fingerprint``); an observation is
one sighting of it in one scan (unique per finding and scan). ``ingested_events``
makes ingest idempotent: an event id is recorded once, in the same transaction as
what it changed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: JSONB on PostgreSQL, JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")


class JsonText(TypeDecorator[Any]):
    """JSON stored as text on both databases: written once as the JSON text ingest
    validated, read back whole, never queried inside (``::json`` where a query must)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


#: SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Hex digests compare bytewise: the "C" collation on PostgreSQL avoids locale-aware compares.
Digest = String(64).with_variant(String(64, collation="C"), "postgresql")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    #: ``scanfleet`` for scans the coordinator created, ``external`` for scan ids first
    #: seen on the finding stream (another service publishing its own findings).
    origin: Mapped[str] = mapped_column(String(16), default="scanfleet")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    profile: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requested_by: Mapped[str | None] = mapped_column(String(256))
    targets: Mapped[list[str] | None] = mapped_column(Json)
    tools: Mapped[list[str] | None] = mapped_column(Json)
    labels: Mapped[dict[str, str] | None] = mapped_column(Json)
    config_hash: Mapped[str | None] = mapped_column(String(64))
    tool_versions: Mapped[dict[str, str] | None] = mapped_column(Json)
    reason: Mapped[str | None] = mapped_column(Text)
    #: The scan's effective budget (profile, scope overrides aside, CLI overrides).
    budget: Mapped[dict[str, Any] | None] = mapped_column(Json)
    #: After this the scan's unfinished tasks are cancelled (its max wall time).
    deadline_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancelled_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Task(Base):
    """One tool run against one target; while ``admitted`` or ``running`` it holds a lease.

    The lease is the row itself: it occupies one of its target's concurrency slots and
    ``rps_allocated`` of the target's rate until the task ends or ``lease_expires_at``
    passes without a heartbeat (the reaper then reclaims it).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_scan_status", "scan_id", "status"),
        # Admission: pending tasks and held leases of a set of targets.
        Index("ix_tasks_status_target", "status", "target_key"),
        # The reaper: leases past their expiry.
        Index("ix_tasks_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    scan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(2048))
    tool: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str] = mapped_column(String(64), default="default")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any] | None] = mapped_column(Json)
    argv: Mapped[list[str] | None] = mapped_column(Json)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    findings_count: Mapped[int | None] = mapped_column(Integer)
    tool_version: Mapped[str | None] = mapped_column(String(128))
    config_hash: Mapped[str | None] = mapped_column(String(64))
    artifact_ref: Mapped[str | None] = mapped_column(String(1024))
    worker: Mapped[str | None] = mapped_column(String(256))
    #: The budget key: the target's IP, or its host name when it is given by name.
    target_key: Mapped[str | None] = mapped_column(String(253))
    budget_class: Mapped[str | None] = mapped_column(String(16))
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    #: The target's rate budget, and the share of it this attempt was given.
    rps: Mapped[float | None] = mapped_column(Float)
    rps_allocated: Mapped[float | None] = mapped_column(Float)
    max_runtime_s: Mapped[int | None] = mapped_column(Integer)
    admitted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: A retried task waits until then (capped exponential backoff).
    not_before: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: The asset's stable address: its host name if known, else its IP.
    key: Mapped[str] = mapped_column(String(253), unique=True)
    host: Mapped[str | None] = mapped_column(String(253))
    ip: Mapped[str | None] = mapped_column(String(45))
    #: Assets are only ever inserted by ingest, never updated, so concurrent batches
    #: that sight the same asset do not queue on its row lock.
    first_seen: Mapped[datetime] = mapped_column(Timestamp)


class Finding(Base):
    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_asset_id", "asset_id"),
        Index("ix_findings_status_severity", "status", "severity"),
        # Every re-sighting rewrites its finding: half of each page kept free lets
        # PostgreSQL make nearly all of those heap-only (HOT) updates that touch no index.
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(Digest, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(256))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    transport: Mapped[str | None] = mapped_column(String(8))
    port: Mapped[int | None] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(String(4096))
    identity: Mapped[dict[str, Any]] = mapped_column(Json)
    title: Mapped[str] = mapped_column(String(512))
    severity: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(Json)
    attr_hash: Mapped[str] = mapped_column(Digest)
    description: Mapped[str | None] = mapped_column(Text)
    remediation: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str] | None] = mapped_column(Json)
    cwe: Mapped[list[str] | None] = mapped_column(Json)
    cve: Mapped[list[str] | None] = mapped_column(Json)
    cvss: Mapped[float | None] = mapped_column(Float)
    #: ``open`` while sighted; the coordinator's diff marks it ``fixed``.
    status: Mapped[str] = mapped_column(String(16), default="open")
    first_seen: Mapped[datetime] = mapped_column(Timestamp)
    last_seen: Mapped[datetime] = mapped_column(Timestamp)
    #: When the attribute hash last changed (the finding was "updated").
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    last_scan_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class Observation(Base):
    """One sighting of a finding in one scan (its latest evidence in that scan)."""

    __tablename__ = "observations"
    __table_args__ = (
        # One observation per finding per scan, and that is its key (nothing refers to an
        # observation otherwise); scan first, it also serves "what did scan X see".
        PrimaryKeyConstraint("scan_id", "finding_id", name="pk_observations"),
        Index("ix_observations_finding_id", "finding_id"),
    )

    # No foreign-key constraints on this, the hottest table: ingest writes the finding
    # and the scan in the same transaction and statement chain as the observation, and
    # per-row FK triggers cost a quarter of the batch time. Deleting a finding or a scan
    # deletes its observations explicitly (storage.findings / storage.scans).
    finding_id: Mapped[int] = mapped_column(BigInteger)
    scan_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    observed_at: Mapped[datetime] = mapped_column(Timestamp)
    tool_name: Mapped[str] = mapped_column(String(64))
    tool_version: Mapped[str] = mapped_column(String(128))
    attr_hash: Mapped[str] = mapped_column(Digest)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JsonText())


class IngestedEvent(Base):
    __tablename__ = "ingested_events"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    scan_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    ingested_at: Mapped[datetime] = mapped_column(Timestamp)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(1024), unique=True)
    sha256: Mapped[str] = mapped_column(Digest)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    scan_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)
