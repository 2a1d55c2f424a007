"""The PostgreSQL batch writer: COPY into a temporary staging table, then set-based upserts.

Per batch, in one transaction: COPY the records into ``ingest_stage``; record the
event ids (duplicates are dropped from the stage); create external scans on first
sight; insert new assets; upsert findings by fingerprint and insert observations
per (finding, scan) in one statement; commit. Rows are taken in key order so that
concurrent consumers lock in the same order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from contracts.errors import TransientError
from ingest.record import RECORD_COLUMNS, IngestRecord
from ingest.writer import BatchOutcome, BatchRejected

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
    identity jsonb NOT NULL,
    title text NOT NULL,
    severity text NOT NULL,
    confidence text NOT NULL,
    attributes jsonb NOT NULL,
    attr_hash text COLLATE "C" NOT NULL,
    description text,
    remediation text,
    "references" jsonb NOT NULL,
    cwe jsonb NOT NULL,
    cve jsonb NOT NULL,
    cvss double precision,
    evidence jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""

_COPY = sql.SQL("COPY ingest_stage ({}) FROM STDIN").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in RECORD_COLUMNS)
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
SELECT scan_id, 'external', 'external', min(observed_at)
FROM ingest_stage GROUP BY scan_id ORDER BY scan_id
ON CONFLICT (id) DO NOTHING
"""

_NEW_ASSETS = """
INSERT INTO assets (key, host, ip, first_seen)
SELECT asset_key, max(host), max(ip), min(observed_at)
FROM ingest_stage GROUP BY asset_key ORDER BY asset_key
ON CONFLICT (key) DO NOTHING
"""

# One statement: the previous attribute hashes (for the "updated" count), the finding
# upsert, and the observations joined to the upsert's RETURNING rows.
_UPSERT = """
WITH latest AS (
    SELECT DISTINCT ON (s.fingerprint)
        s.*, min(s.observed_at) OVER (PARTITION BY s.fingerprint) AS first_observed_at
    FROM ingest_stage s
    ORDER BY s.fingerprint, s.observed_at DESC, s.event_id
),
previous AS (
    SELECT f.fingerprint, f.attr_hash FROM findings f
    WHERE f.fingerprint IN (SELECT fingerprint FROM latest)
),
upserted AS (
    INSERT INTO findings AS f (
        fingerprint, kind, rule_id, asset_id, transport, port, url, identity, title,
        severity, confidence, attributes, attr_hash, description, remediation,
        "references", cwe, cve, cvss, status, first_seen, last_seen, updated_at,
        last_scan_id
    )
    SELECT
        l.fingerprint, l.kind, l.rule_id, a.id, l.transport, l.port, l.url, l.identity,
        l.title, l.severity, l.confidence, l.attributes, l.attr_hash, l.description,
        l.remediation, l."references", l.cwe, l.cve, l.cvss, 'open', l.first_observed_at,
        l.observed_at, l.observed_at, l.scan_id
    FROM latest l JOIN assets a ON a.key = l.asset_key
    ORDER BY l.fingerprint
    ON CONFLICT (fingerprint) DO UPDATE SET
        first_seen = LEAST(f.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(f.last_seen, EXCLUDED.last_seen),
        title = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.title ELSE f.title END,
        severity = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.severity ELSE f.severity END,
        confidence = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.confidence ELSE f.confidence END,
        attributes = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.attributes ELSE f.attributes END,
        attr_hash = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.attr_hash ELSE f.attr_hash END,
        description = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.description ELSE f.description END,
        remediation = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.remediation ELSE f.remediation END,
        "references" = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED."references" ELSE f."references" END,
        cwe = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED.cwe ELSE f.cwe END,
        cve = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED.cve ELSE f.cve END,
        cvss = CASE WHEN EXCLUDED.last_seen >= f.last_seen THEN EXCLUDED.cvss ELSE f.cvss END,
        updated_at = CASE
            WHEN EXCLUDED.last_seen >= f.last_seen AND EXCLUDED.attr_hash <> f.attr_hash
            THEN EXCLUDED.last_seen ELSE f.updated_at END,
        status = CASE WHEN EXCLUDED.last_seen > f.last_seen THEN 'open' ELSE f.status END,
        last_scan_id = CASE WHEN EXCLUDED.last_seen >= f.last_seen
            THEN EXCLUDED.last_scan_id ELSE f.last_scan_id END
    RETURNING f.id, f.fingerprint, f.attr_hash, (f.xmax = 0) AS created
),
observed AS (
    INSERT INTO observations (
        finding_id, scan_id, task_id, event_id, observed_at, tool_name, tool_version,
        attr_hash, evidence
    )
    SELECT DISTINCT ON (u.id, s.scan_id)
        u.id, s.scan_id, s.task_id, s.event_id, s.observed_at, s.tool_name,
        s.tool_version, s.attr_hash, s.evidence
    FROM ingest_stage s JOIN upserted u ON u.fingerprint = s.fingerprint
    ORDER BY u.id, s.scan_id, s.observed_at DESC, s.event_id
    ON CONFLICT (finding_id, scan_id) DO NOTHING
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM upserted WHERE created),
    (SELECT count(*) FROM upserted u LEFT JOIN previous p ON p.fingerprint = u.fingerprint
        WHERE NOT u.created AND p.attr_hash IS DISTINCT FROM u.attr_hash),
    (SELECT count(*) FROM observed)
"""

#: SQLSTATE classes that mean "the connection or server went away, try again".
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53", "40")


def _is_transient(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    state = exc.sqlstate or ""
    return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES)


class PostgresBatchWriter:
    """Writes batches over one psycopg connection, reconnecting on demand."""

    def __init__(self, conninfo: str, *, application_name: str = "scanfleet-ingest") -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(
                    self._conninfo,
                    application_name=self._application_name,
                    connect_timeout=10,
                )
                # Commit durability is kept (the batch is acked only after commit).
                with conn.transaction():
                    conn.execute(_STAGE_DDL)
            except psycopg.Error as exc:
                raise TransientError(f"cannot connect to PostgreSQL: {exc}") from exc
            self._conn = conn
        return self._conn

    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    for record in records:
                        copy.write_row(record.as_row())
                cur.execute(_DROP_DUPLICATES)
                duplicates = max(cur.rowcount, 0)
                if duplicates == len(records):
                    return BatchOutcome(len(records), duplicates, 0, 0, 0)
                cur.execute(_EXTERNAL_SCANS)
                cur.execute(_NEW_ASSETS)
                cur.execute(_UPSERT)
                row = cur.fetchone()
                assert row is not None
                created, updated, observed = (int(v) for v in row)  # type: ignore[call-overload]
        except psycopg.Error as exc:
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
