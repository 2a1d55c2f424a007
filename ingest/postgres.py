"""The PostgreSQL batch writer: COPY into a temporary staging table, then set-based upserts.

Per batch, in one transaction: COPY the records into ``ingest_stage``; record the
event ids (duplicates are dropped from the stage); create external scans on first
sight; insert new assets; upsert findings by fingerprint and insert observations
per (finding, scan) in one statement; commit. Rows are taken in key order so that
concurrent consumers lock in the same order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from contracts.errors import TransientError
from ingest.record import RECORD_COLUMNS, IngestRecord, json_text
from ingest.writer import VOLATILE_COLUMNS, BatchOutcome, BatchRejected, batch_facts

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
_LATEST_COLUMNS = """
        fingerprint, kind, rule_id, asset_id, transport, port, url, identity, title,
        severity, confidence, attributes, attr_hash, description, remediation,
        "references", cwe, cve, cvss, first_observed_at, observed_at, scan_id"""

_UPSERT_TEMPLATE = """
WITH {latest},
upserted AS (
    INSERT INTO findings AS f (
        fingerprint, kind, rule_id, asset_id, transport, port, url, identity, title,
        severity, confidence, attributes, attr_hash, description, remediation,
        "references", cwe, cve, cvss, status, first_seen, last_seen, updated_at,
        last_scan_id
    )
    SELECT
        fingerprint, kind, rule_id, asset_id, transport, port, url, identity::jsonb, title,
        severity, confidence, attributes::jsonb, attr_hash, description, remediation,
        "references"::jsonb, cwe::jsonb, cve::jsonb, cvss, 'open', first_observed_at,
        observed_at, observed_at, scan_id
    FROM latest
    {latest_order}
    ON CONFLICT (fingerprint) DO UPDATE SET
        first_seen = LEAST(f.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(f.last_seen, EXCLUDED.last_seen),
        {newest_wins},
        updated_at = CASE
            WHEN EXCLUDED.last_seen >= f.last_seen AND EXCLUDED.attr_hash <> f.attr_hash
            THEN EXCLUDED.last_seen ELSE f.updated_at END,
        status = CASE WHEN EXCLUDED.last_seen > f.last_seen THEN 'open' ELSE f.status END
    RETURNING f.id, f.fingerprint, f.updated_at, (f.xmax = 0) AS created
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

_NEWEST_WINS = ",\n        ".join(
    f'"{c}" = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED."{c}" ELSE f."{c}" END'
    for c in VOLATILE_COLUMNS
)


def _upsert(latest: str, order: str) -> str:
    return (
        _UPSERT_TEMPLATE.replace("{latest}", latest.replace("{latest_columns}", _LATEST_COLUMNS))
        .replace("{latest_order}", order)
        .replace("{newest_wins}", _NEWEST_WINS)
    )


#: The stage holds no duplicates: the latest sightings are flagged, in fingerprint order.
_UPSERT_FLAGGED = _upsert(_LATEST_FLAGGED, "")
#: Duplicates were dropped from the stage: the latest sightings are found by sorting.
_UPSERT_SORTED = _upsert(_LATEST_SORTED, "ORDER BY fingerprint")

_fingerprint_of = attrgetter("fingerprint")

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
    are cached the same way.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        application_name: str = "scanfleet-ingest",
        cache_size: int = 1_000_000,
    ) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._asset_ids: dict[str, int] = {}
        self._known_scans: set[UUID] = set()
        self._cache_size = cache_size

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
        if len(cache) + len(missing) > self._cache_size:
            cache.clear()
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
        if len(self._known_scans) > self._cache_size:
            self._known_scans.clear()
        self._known_scans.update(unknown)

    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        if not records:
            return BatchOutcome(0, 0, 0, 0, 0)
        first_seen, kept_events, latest_events = batch_facts(records)
        # Staged in fingerprint order (the order findings are locked in, so that concurrent
        # consumers cannot deadlock; see _LATEST_FLAGGED).
        ordered = sorted(records, key=_fingerprint_of)
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                asset_ids = self._resolve_assets(cur, records)
                self._ensure_scans(cur, records)
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
                    return BatchOutcome(len(records), duplicates, 0, 0, 0)
                cur.execute(_UPSERT_SORTED if duplicates else _UPSERT_FLAGGED)
                row = cur.fetchone()
                assert row is not None
                created, updated, observed = (int(v) for v in row)
        except psycopg.Error as exc:
            # The transaction rolled back: forget ids it may have cached.
            self._asset_ids.clear()
            self._known_scans.clear()
            if _is_transient(exc):
                self.close()
                raise TransientError(f"PostgreSQL: {exc}") from exc
            raise BatchRejected(f"PostgreSQL refused the batch: {exc}") from exc
        return BatchOutcome(len(records), duplicates, created, updated, observed)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
