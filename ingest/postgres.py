"""The PostgreSQL batch writer: one transaction per batch, by one of two paths.

**Direct** (the usual path): the batch's event ids are COPYed straight into the ledger
``ingested_events`` and its observations straight into ``observations``, with no
``ON CONFLICT`` check on either; only the latest sighting of each finding goes through a
temporary stage (``ingest_finding_stage``) into the findings upsert, whose RETURNING rows
give the finding ids the observations need. The upsert finds a stored finding by its id,
which the writer remembers or looks up by fingerprint, and gives a new one an id of its
own. It assumes what is true of nearly every batch: none of its events was ingested
before, none of its (scan, finding) pairs was observed by an earlier batch, and none of
its new findings was created by a concurrent batch.

**Staged** (the path that holds whatever arrives): COPY the whole batch into a temporary
stage ``ingest_stage``; record the event ids (duplicates are dropped from the stage);
upsert findings by fingerprint and insert observations per (finding, scan) in one
statement, both with ``ON CONFLICT``.

When the assumption fails, the unique key of the ledger, of observations or of the
findings' fingerprint refuses the direct path's statement, the transaction rolls back
whole, and the batch is written again by the staged path; the next batches stay on it
for a while (see :attr:`PostgresBatchWriter.STAGED_AFTER_CONFLICT`), so redeliveries
after a crash, or scans that sight one finding from several tools, do not pay for two
attempts a batch.
Both paths create external scans on first sight and insert new assets first, and take
findings in fingerprint order, so that concurrent consumers lock in the same order and
cannot deadlock each other on findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any
from uuid import UUID

import psycopg
import structlog
from psycopg import sql

from contracts.errors import TransientError
from ingest.record import RECORD_COLUMNS, IngestRecord, json_text
from ingest.writer import (
    OBSERVATION_FIELDS,
    VOLATILE_COLUMNS,
    BatchFacts,
    BatchOutcome,
    BatchRejected,
    batch_facts,
)

log = structlog.get_logger("scanfleet.ingest")

_STAGE_DDL = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_stage (
    event_id uuid NOT NULL,
    scan_id uuid NOT NULL,
    task_id uuid,
    tool_name text NOT NULL,
    tool_version text NOT NULL,
    observed_at timestamptz NOT NULL,
    fingerprint text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    rule_id text NOT NULL,
    asset_key text NOT NULL,
    host text,
    ip text,
    transport text,
    port integer,
    url text,
    identity text NOT NULL,
    title text NOT NULL,
    severity text NOT NULL,
    confidence text NOT NULL,
    attributes text NOT NULL,
    attr_hash text COLLATE "C" NOT NULL,
    description text,
    remediation text,
    "references" text NOT NULL,
    cwe text NOT NULL,
    cve text NOT NULL,
    cvss double precision,
    evidence text NOT NULL,
    asset_id bigint NOT NULL,
    first_observed_at timestamptz NOT NULL,
    keep_observation boolean NOT NULL,
    is_latest boolean NOT NULL
) ON COMMIT DELETE ROWS
"""

#: Columns computed per batch, after the record's own.
BATCH_COLUMNS = ("asset_id", "first_observed_at", "keep_observation", "is_latest")

_COPY = sql.SQL("COPY ingest_stage ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in (*RECORD_COLUMNS, *BATCH_COLUMNS))
)

#: PostgreSQL types of the staged columns, in order, for binary COPY.
_STAGE_TYPES = (
    "uuid",
    "uuid",
    "uuid",
    "text",
    "text",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "text",
    "text",  # identity (JSON, cast to jsonb where it is stored: see the upsert)
    "text",
    "text",
    "text",
    "text",  # attributes (JSON)
    "text",
    "text",
    "text",
    "text",  # references (JSON)
    "text",  # cwe (JSON)
    "text",  # cve (JSON)
    "float8",
    "text",  # evidence (JSON)
    "int8",
    "timestamptz",
    "bool",
    "bool",
)


_DROP_DUPLICATES = """
WITH fresh AS (
    INSERT INTO ingested_events (event_id, scan_id, ingested_at)
    SELECT event_id, scan_id, now() FROM ingest_stage ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
DELETE FROM ingest_stage s
WHERE NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.event_id = s.event_id)
"""

_EXTERNAL_SCANS = """
INSERT INTO scans (id, origin, status, created_at)
SELECT id, 'external', 'external', created_at
FROM json_to_recordset(%s::json) AS batch(id uuid, created_at timestamptz)
ORDER BY id
ON CONFLICT (id) DO NOTHING
"""

_ASSET_IDS = "SELECT id, key FROM assets WHERE key = ANY(%s)"

_NEW_ASSETS = """
WITH batch AS (
    SELECT * FROM json_to_recordset(%s::json)
        AS b(key text, host text, ip text, first_seen timestamptz)
),
inserted AS (
    INSERT INTO assets (key, host, ip, first_seen)
    SELECT key, host, ip, first_seen FROM batch ORDER BY key
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key
)
SELECT id, key FROM inserted
UNION ALL
SELECT a.id, a.key FROM assets a JOIN batch b ON a.key = b.key
"""

# One statement: the finding upsert (the latest sighting in the batch wins, and only if
# it is newer than what is stored), then the observations joined to its RETURNING rows.
# A finding counts as "updated" when its attribute hash changed with this sighting.
#
# Two forms of "latest". The writer stages the records sorted by fingerprint with the
# latest sighting of each flagged (``is_latest``), so the usual statement only filters
# the stage, which it reads in the order it was written: no sorting in the database (two
# sorts of the wide rows were ~10% of its time per batch). Once duplicates have been
# dropped from the stage, a flag may point at a dropped row; that batch takes the latest
# sightings by DISTINCT ON instead (sorted, as before).
_LATEST_FLAGGED = """
latest AS NOT MATERIALIZED (
    SELECT {latest_columns} FROM ingest_stage WHERE is_latest
)"""
_LATEST_SORTED = """
latest AS (
    SELECT DISTINCT ON (fingerprint) {latest_columns}
    FROM ingest_stage
    ORDER BY fingerprint, observed_at DESC, event_id
)"""
#: The columns of a latest sighting: what the findings upsert reads (its identity, the
#: volatile columns it overwrites, and when and in which scan it was seen).
_LATEST_NAMES = (
    "fingerprint",
    "kind",
    "rule_id",
    "asset_id",
    "transport",
    "port",
    "url",
    "identity",
    *(c for c in VOLATILE_COLUMNS if c != "last_scan_id"),
    "first_observed_at",
    "observed_at",
    "scan_id",
)
_LATEST_COLUMNS = ", ".join(f'"{c}"' for c in _LATEST_NAMES)

#: The findings upsert of both paths, from ``{source}`` (rows of ``_LATEST_COLUMNS``, in
#: fingerprint order), by the fingerprint's unique key or (the direct path) by id.
_FINDINGS_UPSERT = """
    INSERT INTO findings AS f (
        {id_column}fingerprint, kind, rule_id, asset_id, transport, port, url, identity, title,
        severity, confidence, attributes, attr_hash, description, remediation,
        "references", cwe, cve, cvss, status, first_seen, last_seen, updated_at,
        last_scan_id
    )
    SELECT
        {id_value}fingerprint, kind, rule_id, asset_id, transport, port, url, identity::jsonb,
        title, severity, confidence, attributes::jsonb, attr_hash, description, remediation,
        "references"::jsonb, cwe::jsonb, cve::jsonb, cvss, 'open', first_observed_at,
        observed_at, observed_at, scan_id
    FROM {source}
    ON CONFLICT ({key}) DO UPDATE SET
        first_seen = LEAST(f.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(f.last_seen, EXCLUDED.last_seen),
        {newest_wins},
        updated_at = CASE
            WHEN EXCLUDED.last_seen >= f.last_seen AND EXCLUDED.attr_hash <> f.attr_hash
            THEN EXCLUDED.last_seen ELSE f.updated_at END,
        status = CASE WHEN EXCLUDED.last_seen > f.last_seen THEN 'open' ELSE f.status END
    RETURNING f.id, f.fingerprint, f.updated_at, (f.xmax = 0) AS created"""

_UPSERT_TEMPLATE = """
WITH {latest},
upserted AS ({findings_upsert}
),
observed AS (
    INSERT INTO observations (
        finding_id, scan_id, task_id, event_id, observed_at, tool_name, tool_version,
        attr_hash, evidence
    )
    SELECT u.id, s.scan_id, s.task_id, s.event_id, s.observed_at, s.tool_name,
        s.tool_version, s.attr_hash, s.evidence
    FROM ingest_stage s JOIN upserted u ON u.fingerprint = s.fingerprint
    WHERE s.keep_observation
    ON CONFLICT (scan_id, finding_id) DO NOTHING
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM upserted WHERE created),
    (SELECT count(*) FROM upserted u JOIN latest l ON l.fingerprint = u.fingerprint
        WHERE NOT u.created AND u.updated_at = l.observed_at),
    (SELECT count(*) FROM observed)
"""

#: The sequence behind findings.id (its serial column, created by the first migration).
_FINDINGS_ID_SEQUENCE = "'findings_id_seq'::regclass"

_NEWEST_WINS = ",\n        ".join(
    f'"{c}" = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED."{c}" ELSE f."{c}" END'
    for c in VOLATILE_COLUMNS
)


def _findings_upsert(source: str, *, by_id: bool = False) -> str:
    """By id: each row carries the id of its finding when the writer knows it, and takes a
    new one when it does not (see :meth:`PostgresBatchWriter._write_direct`)."""
    return (
        _FINDINGS_UPSERT.replace("{source}", source)
        .replace("{newest_wins}", _NEWEST_WINS)
        .replace("{id_column}", "id, " if by_id else "")
        .replace("{id_value}", f"COALESCE(id, nextval({_FINDINGS_ID_SEQUENCE})), " if by_id else "")
        .replace("{key}", "id" if by_id else "fingerprint")
    )


def _upsert(latest: str, order: str) -> str:
    return _UPSERT_TEMPLATE.replace(
        "{latest}", latest.replace("{latest_columns}", _LATEST_COLUMNS)
    ).replace("{findings_upsert}", _findings_upsert(f"latest {order}".rstrip()))


#: The stage holds no duplicates: the latest sightings are flagged, in fingerprint order.
_UPSERT_FLAGGED = _upsert(_LATEST_FLAGGED, "")
#: Duplicates were dropped from the stage: the latest sightings are found by sorting.
_UPSERT_SORTED = _upsert(_LATEST_SORTED, "ORDER BY fingerprint")

_fingerprint_of = attrgetter("fingerprint")
_observed_at_of = attrgetter("observed_at")

# -- the direct path ----------------------------------------------------------------------

_STAGE_COLUMN_TYPES = dict(zip((*RECORD_COLUMNS, *BATCH_COLUMNS), _STAGE_TYPES, strict=True))

#: The latest sighting of each finding in the batch, in fingerprint order: the columns of
#: the staged path's ``latest``, so one upsert serves both paths, and the finding's id
#: when the writer knows it.
_FINDING_STAGE_DDL = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_finding_stage ON COMMIT DELETE ROWS AS
SELECT {latest_columns}, NULL::bigint AS id FROM ingest_stage WITH NO DATA
""".replace("{latest_columns}", _LATEST_COLUMNS)
#: Finding-stage columns taken from the record as they are, then those of the batch
#: (``asset_id``, ``first_observed_at``: the rows are written in this order).
_FINDING_FIELDS = tuple(c for c in _LATEST_NAMES if c in RECORD_COLUMNS)
_FINDING_BATCH_FIELDS = tuple(c for c in _LATEST_NAMES if c not in RECORD_COLUMNS)
_COPY_FINDINGS = sql.SQL("COPY ingest_finding_stage ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in (*_FINDING_FIELDS, *_FINDING_BATCH_FIELDS, "id"))
)
_FINDING_TYPES = (
    *(_STAGE_COLUMN_TYPES[c] for c in (*_FINDING_FIELDS, *_FINDING_BATCH_FIELDS)),
    "int8",
)
_finding_fields = itemgetter(*(RECORD_COLUMNS.index(c) for c in _FINDING_FIELDS))

_UPSERT_FINDINGS = _findings_upsert("ingest_finding_stage", by_id=True)

#: The ids of stored findings, by fingerprint (those the writer does not know yet).
_FINDING_IDS = "SELECT id, fingerprint FROM findings WHERE fingerprint = ANY(%s)"

_COPY_EVENTS = "COPY ingested_events (event_id, scan_id, ingested_at) FROM STDIN (FORMAT BINARY)"
_EVENT_TYPES = ("uuid", "uuid", "timestamptz")
_event_fields = itemgetter(RECORD_COLUMNS.index("event_id"), RECORD_COLUMNS.index("scan_id"))

_COPY_OBSERVATIONS = sql.SQL(
    "COPY observations (finding_id, {}) FROM STDIN (FORMAT BINARY)"
).format(sql.SQL(", ").join(sql.Identifier(c) for c in OBSERVATION_FIELDS))
_OBSERVATION_TYPES = ("int8", *(_STAGE_COLUMN_TYPES[c] for c in OBSERVATION_FIELDS))
_observation_fields = itemgetter(*(RECORD_COLUMNS.index(c) for c in OBSERVATION_FIELDS))


class _Conflict(Exception):
    """The direct path met an event already ingested, a (scan, finding) already observed, or
    a finding created by a concurrent batch since it looked the finding up."""


#: SQLSTATE classes that mean "the connection or server went away, try again".
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53", "40")


def _is_transient(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    state = exc.sqlstate or ""
    return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)


class PostgresBatchWriter:
    """Writes batches over one psycopg connection, reconnecting on demand.

    Asset ids are cached per writer: assets are insert-only, so a key seen once
    keeps its id, and most batches need no asset statement at all. Scan ids seen
    are cached the same way, and so are finding ids by fingerprint (findings are never
    deleted), up to ``finding_cache_size``: the direct path updates a finding it knows
    by its primary key, whose recent pages stay in PostgreSQL's buffers, rather than by
    its fingerprint, a random key all over a unique index that, with a million findings
    stored, no longer fits in them.

    ``direct=False`` writes every batch by the staged path (see the module documentation).
    """

    #: Batches written by the staged path after the direct path met a conflict: a
    #: redelivered backlog, or a scan whose tools sight the same findings, tends to last.
    STAGED_AFTER_CONFLICT = 16

    def __init__(
        self,
        conninfo: str,
        *,
        application_name: str = "scanfleet-ingest",
        cache_size: int = 1_000_000,
        finding_cache_size: int = 250_000,
        direct: bool = True,
    ) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._asset_ids: dict[str, int] = {}
        self._known_scans: set[UUID] = set()
        self._cache_size = cache_size
        #: Finding ids by fingerprint, of committed rows only (a rolled-back insert's id
        #: names no finding); ~0.2 KB an entry.
        self._finding_ids: dict[str, int] = {}
        self._finding_cache_size = finding_cache_size
        self._direct = direct
        #: Batches left to write by the staged path before the direct path is tried again.
        self._staged_left = 0
        #: Batches whose direct attempt met a conflict and were written again, staged.
        self.conflicts = 0

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(
                    self._conninfo,
                    application_name=self._application_name,
                    connect_timeout=10,
                    # The batch statements are short; compiling them (their cost estimates
                    # over a temporary table without statistics can exceed the threshold)
                    # only costs CPU.
                    # Hash joins between the stage and a batch's upserted rows: without
                    # statistics on the stage, the planner may pick merge joins, which sort
                    # both sides (each a fifth of the statement's time here).
                    options="-c jit=off -c enable_mergejoin=off",
                )
                with conn.transaction():
                    conn.execute(_STAGE_DDL)
                    conn.execute(_FINDING_STAGE_DDL)
            except psycopg.Error as exc:
                raise TransientError(f"cannot connect to PostgreSQL: {exc}") from exc
            self._conn = conn
        return self._conn

    def _resolve_assets(
        self, cur: psycopg.Cursor[tuple[Any, ...]], records: Sequence[IngestRecord]
    ) -> dict[str, int]:
        """Asset key -> id for the batch, inserting the assets never seen before."""
        cache = self._asset_ids
        missing: dict[str, IngestRecord] = {}
        for record in records:
            if record.asset_key in cache:
                continue
            seen = missing.get(record.asset_key)
            if seen is None or record.observed_at < seen.observed_at:
                missing[record.asset_key] = record  # first_seen is the earliest sighting
        if not missing:
            return cache
        firsts = list(missing.values())
        # One JSON parameter (orjson writes UUIDs and aware datetimes as RFC 3339): psycopg
        # would dump four arrays element by element in Python.
        batch = [
            {"key": r.asset_key, "host": r.host, "ip": r.ip, "first_seen": r.observed_at}
            for r in firsts
        ]
        cur.execute(_NEW_ASSETS, (json_text(batch),))
        for asset_id, key in cur.fetchall():
            cache[key] = asset_id
        late = [key for key in missing if key not in cache]
        if late:
            # Inserted meanwhile by a concurrent batch: visible to a new statement.
            cur.execute(_ASSET_IDS, (late,))
            for asset_id, key in cur.fetchall():
                cache[key] = asset_id
        return cache

    def _ensure_scans(
        self, cur: psycopg.Cursor[tuple[Any, ...]], records: Sequence[IngestRecord]
    ) -> None:
        unknown: dict[UUID, datetime] = {}
        for record in records:
            if record.scan_id in self._known_scans:
                continue
            seen = unknown.get(record.scan_id)
            if seen is None or record.observed_at < seen:
                unknown[record.scan_id] = record.observed_at
        if not unknown:
            return
        batch = [{"id": scan, "created_at": at} for scan, at in unknown.items()]
        cur.execute(_EXTERNAL_SCANS, (json_text(batch),))
        self._known_scans.update(unknown)

    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        if not records:
            return BatchOutcome(0, 0, 0, 0, 0)
        facts = batch_facts(records)
        if self._direct and self._staged_left == 0:
            try:
                return self._transaction(records, facts, direct=True)
            except _Conflict as conflict:
                self.conflicts += 1
                self._staged_left = self.STAGED_AFTER_CONFLICT
                log.info(
                    "batch_written_staged",
                    reason=str(conflict),
                    events=len(records),
                    staged_batches=self.STAGED_AFTER_CONFLICT,
                )
        elif self._staged_left:
            self._staged_left -= 1
        return self._transaction(records, facts, direct=False)

    def _transaction(
        self, records: Sequence[IngestRecord], facts: BatchFacts, *, direct: bool
    ) -> BatchOutcome:
        """One batch in one transaction, by the direct or the staged path."""
        write = self._write_direct if direct else self._write_staged
        conn = self._connection()
        self._trim_caches(len(records))
        try:
            with conn.transaction(), conn.cursor() as cur:
                asset_ids = self._resolve_assets(cur, records)
                self._ensure_scans(cur, records)
                outcome, finding_ids = write(cur, records, facts, asset_ids)
        except psycopg.Error as exc:
            # The transaction rolled back: forget ids it may have cached.
            self._asset_ids.clear()
            self._known_scans.clear()
            if direct and isinstance(exc, psycopg.errors.UniqueViolation):
                raise _Conflict(exc.diag.constraint_name or str(exc)) from exc
            if _is_transient(exc):
                self.close()
                raise TransientError(f"PostgreSQL: {exc}") from exc
            raise BatchRejected(f"PostgreSQL refused the batch: {exc}") from exc
        # Committed: the ids the batch's upsert returned name findings now.
        self._finding_ids.update(finding_ids)
        return outcome

    def _trim_caches(self, incoming: int) -> None:
        """Empty a cache that this batch could take past its bound: between batches, never
        during one, which reads back ids it has just put in."""
        if len(self._asset_ids) + incoming > self._cache_size:
            self._asset_ids.clear()
        if len(self._known_scans) + incoming > self._cache_size:
            self._known_scans.clear()
        if len(self._finding_ids) + incoming > self._finding_cache_size:
            self._finding_ids.clear()

    def _write_direct(
        self,
        cur: psycopg.Cursor[tuple[Any, ...]],
        records: Sequence[IngestRecord],
        facts: BatchFacts,
        asset_ids: dict[str, int],
    ) -> tuple[BatchOutcome, dict[str, int]]:
        """The batch's outcome, and the ids of its findings by fingerprint."""
        first_seen, kept_events, latest_events = facts
        ingested_at = datetime.now(UTC)
        with cur.copy(_COPY_EVENTS) as copy:
            copy.set_types(_EVENT_TYPES)
            for record in records:
                copy.write_row((*_event_fields(record), ingested_at))
        # In fingerprint order: the order findings are locked in (see the module docs).
        latest = sorted((r for r in records if id(r) in latest_events), key=_fingerprint_of)
        # Each finding by its id where it is known, looked up by fingerprint where this
        # writer has not met it; the rest are new, and get an id from the upsert. A finding
        # created by a concurrent batch in between makes the fingerprint's unique key
        # refuse the upsert: a conflict, and the batch is written again by the staged path.
        known = self._finding_ids
        unknown = [r.fingerprint for r in latest if r.fingerprint not in known]
        if unknown:
            # This transaction has written no finding yet: the rows found are committed,
            # and their ids can be kept now.
            cur.execute(_FINDING_IDS, (unknown,))
            known.update((fingerprint, finding_id) for finding_id, fingerprint in cur.fetchall())
        with cur.copy(_COPY_FINDINGS) as copy:
            copy.set_types(_FINDING_TYPES)
            for record in latest:
                fingerprint = record.fingerprint
                copy.write_row(
                    (
                        *_finding_fields(record),
                        asset_ids[record.asset_key],
                        first_seen[fingerprint],
                        known.get(fingerprint),
                    )
                )
        cur.execute(_UPSERT_FINDINGS, binary=True)
        newest = dict(zip(map(_fingerprint_of, latest), map(_observed_at_of, latest), strict=True))
        finding_ids: dict[str, int] = {}
        created = updated = 0
        for finding_id, fingerprint, updated_at, is_new in cur.fetchall():
            finding_ids[fingerprint] = finding_id
            if is_new:
                created += 1
            elif updated_at == newest[fingerprint]:
                updated += 1
        observed = 0
        with cur.copy(_COPY_OBSERVATIONS) as copy:
            copy.set_types(_OBSERVATION_TYPES)
            for record in records:
                if id(record) in kept_events:
                    copy.write_row((finding_ids[record.fingerprint], *_observation_fields(record)))
                    observed += 1
        return BatchOutcome(len(records), 0, created, updated, observed), finding_ids

    def _write_staged(
        self,
        cur: psycopg.Cursor[tuple[Any, ...]],
        records: Sequence[IngestRecord],
        facts: BatchFacts,
        asset_ids: dict[str, int],
    ) -> tuple[BatchOutcome, dict[str, int]]:
        """The batch's outcome, and no finding ids (its statement returns counts only)."""
        first_seen, kept_events, latest_events = facts
        # Staged in fingerprint order (the order findings are locked in, so that concurrent
        # consumers cannot deadlock; see _LATEST_FLAGGED).
        ordered = sorted(records, key=_fingerprint_of)
        with cur.copy(_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            for record in ordered:
                copy.write_row(
                    (
                        *record,
                        asset_ids[record.asset_key],
                        first_seen[record.fingerprint],
                        id(record) in kept_events,
                        id(record) in latest_events,
                    )
                )
        cur.execute(_DROP_DUPLICATES)
        duplicates = max(cur.rowcount, 0)
        if duplicates == len(records):
            return BatchOutcome(len(records), duplicates, 0, 0, 0), {}
        cur.execute(_UPSERT_SORTED if duplicates else _UPSERT_FLAGGED)
        row = cur.fetchone()
        assert row is not None
        created, updated, observed = (int(v) for v in row)
        return BatchOutcome(len(records), duplicates, created, updated, observed), {}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
