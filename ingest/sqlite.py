"""The SQLite batch writer of the embedded mode: the PostgreSQL writer's semantics on SQLite.

Same steps as :mod:`ingest.postgres`, in one ``BEGIN IMMEDIATE`` transaction: stage the
records in a temporary table; insert new assets and external scans; drop the events
already ingested (and record the new ones); upsert findings by fingerprint (the latest
sighting in the batch wins, and only if it is not older than what is stored); insert
one observation per (finding, scan); commit. Statements are SQLAlchemy Core.

Storage notes, so that reading through :mod:`storage.models` gives the same values as
on PostgreSQL:

- timestamps are stored in UTC (SQLite's DATETIME text has no offset, and SQLAlchemy
  writes an aware value's wall-clock time), so that they compare as text in time order;
- the JSON columns get the record's JSON text as is: it is copied from the staging
  table by ``INSERT ... SELECT`` and never passes the JSON type's serialiser, which
  would encode the text a second time;
- UUIDs go through the ``Uuid`` type (32 lowercase hex digits on SQLite), so that their
  text order is PostgreSQL's uuid order (ties between sightings break on ``event_id``).

SQLite is single-writer: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up
to the engine's ``busy_timeout``), so reading what is stored and writing it back is never
interleaved with another batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    and_,
    case,
    delete,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.sqlite import Insert, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from contracts.errors import TransientError
from ingest.record import IngestRecord
from ingest.writer import (
    OBSERVATION_FIELDS,
    VOLATILE_COLUMNS,
    BatchOutcome,
    BatchRejected,
    batch_facts,
)
from storage.database import get_engine
from storage.models import Asset, Finding, IngestedEvent, Observation, Scan

_stage_metadata = MetaData()

#: Per connection, like PostgreSQL's ``ingest_stage`` (emptied before every commit).
_stage = Table(
    "ingest_stage",
    _stage_metadata,
    Column("position", Integer, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("scan_id", Uuid, nullable=False),
    Column("task_id", Uuid),
    Column("tool_name", Text, nullable=False),
    Column("tool_version", Text, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("asset_key", Text, nullable=False),
    Column("host", Text),
    Column("ip", Text),
    Column("transport", Text),
    Column("port", Integer),
    Column("url", Text),
    # JSON text, already serialised: Text so that nothing encodes it again.
    Column("identity", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("confidence", Text, nullable=False),
    Column("attributes", Text, nullable=False),
    Column("attr_hash", Text, nullable=False),
    Column("description", Text),
    Column("remediation", Text),
    Column("references", Text, nullable=False),
    Column("cwe", Text, nullable=False),
    Column("cve", Text, nullable=False),
    Column("cvss", Float),
    Column("evidence", Text, nullable=False),
    # Computed per batch over all its records, as the PostgreSQL writer does.
    Column("first_observed_at", DateTime(timezone=True), nullable=False),
    Column("keep_observation", Boolean, nullable=False),
    # Set once the duplicates are gone: the finding existed before this batch.
    Column("known", Boolean, nullable=False, default=False),
    prefixes=["TEMPORARY"],
)

_findings = cast(Table, Finding.__table__)
_assets = cast(Table, Asset.__table__)
_scans = cast(Table, Scan.__table__)
_events = cast(Table, IngestedEvent.__table__)
_observations = cast(Table, Observation.__table__)
_stage_c = _stage.c

_CREATE_STAGE = CreateTable(_stage, if_not_exists=True)
_CLEAR_STAGE = delete(_stage)

# SQLite can read the ON of "INSERT ... SELECT ... FROM t ON CONFLICT" as a join
# constraint: every INSERT ... SELECT below has a WHERE clause (``WHERE 1 = 1`` if need be).

# The earliest sighting in the batch of each asset key gives the new asset's row.
_asset_rank = func.row_number().over(
    partition_by=_stage_c.asset_key, order_by=(_stage_c.observed_at, _stage_c.position)
)
_asset_firsts = select(
    _stage_c.asset_key, _stage_c.host, _stage_c.ip, _stage_c.observed_at, _asset_rank.label("rn")
).subquery("firsts")
_NEW_ASSETS = (
    insert(_assets)
    .from_select(
        ["key", "host", "ip", "first_seen"],
        select(
            _asset_firsts.c.asset_key,
            _asset_firsts.c.host,
            _asset_firsts.c.ip,
            _asset_firsts.c.observed_at,
        )
        .where(_asset_firsts.c.rn == 1)
        .order_by(_asset_firsts.c.asset_key),
        include_defaults=False,
    )
    .on_conflict_do_nothing(index_elements=["key"])
)

_EXTERNAL_SCANS = (
    insert(_scans)
    .from_select(
        ["id", "origin", "status", "created_at"],
        select(
            _stage_c.scan_id,
            literal("external"),
            literal("external"),
            func.min(_stage_c.observed_at),
        )
        .where(true())
        .group_by(_stage_c.scan_id)
        .order_by(_stage_c.scan_id),
        include_defaults=False,
    )
    .on_conflict_do_nothing(index_elements=["id"])
)

_DROP_DUPLICATES = delete(_stage).where(_stage_c.event_id.in_(select(_events.c.event_id)))


def _record_events(now: datetime) -> Insert:
    return (
        insert(_events)
        .from_select(
            ["event_id", "scan_id", "ingested_at"],
            select(_stage_c.event_id, _stage_c.scan_id, literal(now, DateTime(timezone=True)))
            .where(true())
            .order_by(_stage_c.event_id),
            include_defaults=False,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )


_MARK_KNOWN = (
    update(_stage)
    .where(_stage_c.fingerprint.in_(select(_findings.c.fingerprint)))
    .values(known=True)
)

_COUNT_NEW = select(func.count(_stage_c.fingerprint.distinct())).where(_stage_c.known.is_(False))

# The latest sighting of each finding in the batch: newest observed_at, ties to the
# smallest event id (PostgreSQL's DISTINCT ON ... ORDER BY observed_at DESC, event_id).
_latest_rank = func.row_number().over(
    partition_by=_stage_c.fingerprint,
    order_by=(_stage_c.observed_at.desc(), _stage_c.event_id),
)
_ranked = select(_stage, _latest_rank.label("rn")).subquery("ranked")
_r = _ranked.c

#: Column -> value of a new finding row, in the order they are inserted.
_FINDING_ROW = {
    "fingerprint": _r.fingerprint,
    "kind": _r.kind,
    "rule_id": _r.rule_id,
    "asset_id": _assets.c.id,
    "transport": _r.transport,
    "port": _r.port,
    "url": _r.url,
    "identity": _r.identity,
    **{name: _r[name] for name in VOLATILE_COLUMNS if name != "last_scan_id"},
    "status": literal("open"),
    "first_seen": _r.first_observed_at,
    "last_seen": _r.observed_at,
    "updated_at": _r.observed_at,
    "last_scan_id": _r.scan_id,
}

_upsert = insert(_findings).from_select(
    list(_FINDING_ROW),
    select(*_FINDING_ROW.values())
    .join_from(_ranked, _assets, _assets.c.key == _r.asset_key)
    .where(_r.rn == 1)
    .order_by(_r.fingerprint),
    include_defaults=False,
)
_f = _findings.c
_new = _upsert.excluded
_not_older = _new.last_seen >= _f.last_seen
_UPSERT = _upsert.on_conflict_do_update(
    index_elements=["fingerprint"],
    set_={
        "first_seen": func.min(_f.first_seen, _new.first_seen),
        "last_seen": func.max(_f.last_seen, _new.last_seen),
        **{name: case((_not_older, _new[name]), else_=_f[name]) for name in VOLATILE_COLUMNS},
        "updated_at": case(
            (and_(_not_older, _new.attr_hash != _f.attr_hash), _new.last_seen),
            else_=_f.updated_at,
        ),
        "status": case((_new.last_seen > _f.last_seen, literal("open")), else_=_f.status),
    },
)

# "Updated": a finding that existed and whose updated_at is now the batch's latest
# sighting of it (the PostgreSQL writer's count, kept exactly).
_latest_known = (
    select(_stage_c.fingerprint, func.max(_stage_c.observed_at).label("observed_at"))
    .where(_stage_c.known.is_(True))
    .group_by(_stage_c.fingerprint)
    .subquery("latest_known")
)
_COUNT_UPDATED = (
    select(func.count())
    .select_from(_latest_known)
    .join(_findings, _f.fingerprint == _latest_known.c.fingerprint)
    .where(_f.updated_at == _latest_known.c.observed_at)
)

_OBSERVE = (
    insert(_observations)
    .from_select(
        ["finding_id", *OBSERVATION_FIELDS],
        select(_f.id, *(_stage_c[name] for name in OBSERVATION_FIELDS))
        .join_from(_stage, _findings, _f.fingerprint == _stage_c.fingerprint)
        .where(_stage_c.keep_observation.is_(True))
        .order_by(_stage_c.position),
        include_defaults=False,
    )
    .on_conflict_do_nothing(index_elements=["scan_id", "finding_id"])
)

#: SQLite result codes (primary, as in ``sqlite_errorname``) that mean "try again later":
#: another writer holds the lock, or the file or the disk failed us, not the data.
_TRANSIENT_ERRORS = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
)
_TRANSIENT_MESSAGES = ("database is locked", "database table is locked")


def _is_transient(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    if name.startswith(_TRANSIENT_ERRORS):
        return True
    message = str(exc.orig)
    return any(m in message for m in _TRANSIENT_MESSAGES)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class SqliteBatchWriter:
    """Writes batches to SQLite through the shared engine of ``database_url``.

    Each batch takes a pooled connection for its transaction. Unlike the PostgreSQL
    writer, no asset or scan ids are cached: SQLite has no round trips to save.
    """

    def __init__(self, database_url: str) -> None:
        self._engine: Engine = get_engine(database_url)
        if self._engine.dialect.name != "sqlite":
            raise ValueError(f"SqliteBatchWriter needs a sqlite:// URL, not {database_url!r}")

    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        if not records:
            return BatchOutcome(0, 0, 0, 0, 0)
        first_seen, kept_events, _latest = batch_facts(records)
        rows = [
            {
                **record._asdict(),
                "position": position,
                "observed_at": _utc(record.observed_at),
                "first_observed_at": _utc(first_seen[record.fingerprint]),
                "keep_observation": id(record) in kept_events,
                "known": False,
            }
            for position, record in enumerate(records)
        ]
        try:
            with self._engine.connect() as conn:
                # Take the write lock now: a deferred transaction that reads first can fail
                # with SQLITE_BUSY on its first write without waiting for the busy timeout.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.execute(_CREATE_STAGE)
                conn.execute(_CLEAR_STAGE)
                conn.execute(_stage.insert(), rows)
                conn.execute(_NEW_ASSETS)
                conn.execute(_EXTERNAL_SCANS)
                duplicates = max(conn.execute(_DROP_DUPLICATES).rowcount, 0)
                conn.execute(_record_events(datetime.now(UTC)))
                created = updated = observed = 0
                if duplicates < len(records):
                    conn.execute(_MARK_KNOWN)
                    created = int(conn.scalar(_COUNT_NEW) or 0)
                    conn.execute(_UPSERT)
                    updated = int(conn.scalar(_COUNT_UPDATED) or 0)
                    observed = max(conn.execute(_OBSERVE).rowcount, 0)
                conn.execute(_CLEAR_STAGE)
                conn.commit()
        except DBAPIError as exc:
            if _is_transient(exc):
                raise TransientError(f"SQLite: {exc.orig}") from exc
            raise BatchRejected(f"SQLite refused the batch: {exc.orig}") from exc
        return BatchOutcome(len(records), duplicates, created, updated, observed)

    def close(self) -> None:
        """Nothing to release: the engine is shared (``storage.database.get_engine``)."""
