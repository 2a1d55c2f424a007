"""The SQLite writer of the embedded mode against the PostgreSQL writer: same batches, same rows.

Each scenario runs one sequence of batches (and, between them, changes other services
make, such as the coordinator marking a finding fixed) through both writers, each on a
freshly migrated database, and asserts the same outcomes, the expected ones, and the
same rows read back through :mod:`storage.models`. The PostgreSQL writer runs each
scenario twice: by its usual direct path (which falls back to the staged path on a
conflict, as the scenarios with redeliveries provoke), and by the staged path alone.

An event duplicated within one batch is not a case here: ``ingest.batch`` removes those
before a writer sees the batch.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from contracts.errors import TransientError
from contracts.events import FindingEvent
from contracts.registry import EXAMPLE_DIR
from ingest.postgres import PostgresBatchWriter
from ingest.record import IngestRecord, to_record
from ingest.sqlite import SqliteBatchWriter
from ingest.writer import BatchOutcome, BatchRejected, BatchWriter
from storage.database import get_engine, libpq_conninfo, session_scope
from storage.migrate import upgrade
from storage.models import Asset, Finding, IngestedEvent, Observation, Scan

EXAMPLE: dict[str, Any] = json.loads((EXAMPLE_DIR / "finding-event.json").read_text("utf-8"))
T0 = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
ATTRS: dict[str, Any] = EXAMPLE["finding"]["attributes"]


def scan(n: int) -> uuid.UUID:
    return uuid.UUID(f"5ca40000-0000-4000-8000-{n:012d}")


def eid(n: int) -> uuid.UUID:
    return uuid.UUID(f"e0e00000-0000-4000-8000-{n:012d}")


def make(
    n: int,
    scan_n: int,
    *,
    port: int = 22,
    minutes: float = 0,
    attributes: dict[str, Any] | None = None,
    ip: str = "127.0.0.1",
    tz_hours: int = 0,
    **finding_changes: Any,
) -> IngestRecord:
    """Event ``n`` sighting the open ``port`` on ``ip`` in scan ``scan_n``, ``minutes`` after T0."""
    data = copy.deepcopy(EXAMPLE)
    data["event_id"] = str(eid(n))
    data["scan_id"] = str(scan(scan_n))
    when = T0 + timedelta(minutes=minutes)
    data["observed_at"] = when.astimezone(timezone(timedelta(hours=tz_hours))).isoformat()
    finding = data["finding"]
    finding["asset"] = {"ip": ip, "transport": "tcp", "port": port}
    finding["title"] = f"Open TCP port {port}"
    if attributes is not None:
        finding["attributes"] = attributes
    finding.update(finding_changes)
    return to_record(FindingEvent.model_validate(data))


def fp(port: int, ip: str = "127.0.0.1") -> str:
    return make(0, 0, port=port, ip=ip).fingerprint


def newer(version: str) -> dict[str, Any]:
    return {**ATTRS, "version": version}


# -- scenarios ------------------------------------------------------------------------

Step = Sequence[IngestRecord] | Callable[[Session], None]
Snapshot = dict[str, Any]


@dataclass
class Scenario:
    name: str
    steps: list[Step]
    #: (events, duplicates, created, updated, observations) per batch step; None: parity only.
    expected: list[tuple[int, int, int, int, int]] | None
    check: Callable[[Snapshot], None] = field(default=lambda _snapshot: None)
    #: Batches whose direct attempt meets an event already ingested, or a (scan, finding)
    #: already observed (the PostgreSQL writer then writes them by its staged path).
    conflicts: int = 0


def _finding(snapshot: Snapshot, port: int) -> dict[str, Any]:
    found: dict[str, Any] = snapshot["findings"][fp(port)]
    return found


def _assert_attributes(s: Snapshot, attributes: dict[str, Any]) -> None:
    assert _finding(s, 22)["attributes"] == attributes


def _check_new(s: Snapshot) -> None:
    assert len(s["findings"]) == 3
    f22 = _finding(s, 22)
    assert f22["attributes"] == ATTRS
    assert f22["first_seen"] == f22["last_seen"] == f22["updated_at"] == T0
    assert f22["status"] == "open"
    assert f22["last_scan_id"] == scan(1)
    assert f22["evidence_of"] == [EXAMPLE["finding"]["evidence"]]
    assert set(s["assets"]) == {"127.0.0.1", "127.0.0.2"}
    assert s["scans"][scan(1)][:2] == ("external", "external")


def _check_resighting(s: Snapshot) -> None:
    changed, same = _finding(s, 22), _finding(s, 80)
    later = T0 + timedelta(hours=1)
    assert changed["attributes"] == newer("9.3p1")
    assert changed["updated_at"] == changed["last_seen"] == later
    assert same["attributes"] == ATTRS
    assert same["updated_at"] == T0
    assert same["last_seen"] == later
    assert changed["last_scan_id"] == same["last_scan_id"] == scan(2)
    assert changed["first_seen"] == same["first_seen"] == T0
    assert len(s["observations"]) == 4


def _check_late_older(s: Snapshot) -> None:
    f = _finding(s, 22)
    assert f["attributes"] == newer("v2")
    assert f["last_scan_id"] == scan(2)
    assert f["last_seen"] == f["updated_at"] == T0 + timedelta(hours=2)
    assert f["first_seen"] == T0 - timedelta(hours=1)
    assert {o[0] for o in s["observations"]} == {scan(1), scan(2), scan(3), scan(4)}


def _check_two_scans(s: Snapshot) -> None:
    f = _finding(s, 22)
    assert f["attributes"] == newer("b2")
    assert f["last_scan_id"] == scan(2)
    assert f["first_seen"] == T0
    assert f["last_seen"] == f["updated_at"] == T0 + timedelta(minutes=10)
    # One observation per (scan, finding): the scan's latest sighting in the batch.
    assert {(o[0], o[2]) for o in s["observations"]} == {(scan(1), eid(2)), (scan(2), eid(3))}


def _check_external(s: Snapshot) -> None:
    assert s["scans"][scan(7)] == ("external", "external", T0 + timedelta(minutes=1))
    assert s["scans"][scan(8)][:2] == ("scanfleet", "running")


def _check_fixed(s: Snapshot) -> None:
    assert _finding(s, 22)["status"] == "open"
    assert _finding(s, 80)["status"] == "fixed"


def _create_scan(session: Session) -> None:
    session.add(Scan(id=scan(8), origin="scanfleet", status="running", created_at=T0))


def _mark_fixed(session: Session) -> None:
    session.execute(update(Finding).values(status="fixed"))


SCENARIOS = [
    Scenario(
        "new findings",
        [
            [
                make(1, 1, port=22),
                make(2, 1, port=80, minutes=5),
                make(3, 1, port=443, ip="127.0.0.2", minutes=1),
            ]
        ],
        [(3, 0, 3, 0, 3)],
        _check_new,
    ),
    Scenario(
        "same batch twice",
        [
            [make(1, 1, port=22), make(2, 1, port=80), make(3, 1, port=443, ip="127.0.0.2")],
            [make(1, 1, port=22), make(2, 1, port=80), make(3, 1, port=443, ip="127.0.0.2")],
        ],
        [(3, 0, 3, 0, 3), (3, 3, 0, 0, 0)],
        _check_new,
        conflicts=1,
    ),
    Scenario(
        "duplicates mixed with new events",
        [
            [make(1, 1, port=22), make(2, 1, port=80)],
            [make(2, 1, port=80), make(3, 1, port=443, ip="127.0.0.2"), make(1, 1, port=22)],
        ],
        [(2, 0, 2, 0, 2), (3, 2, 1, 0, 1)],
        _check_new,
        conflicts=1,
    ),
    Scenario(
        "re-sighting: one attribute changed, one finding unchanged",
        [
            [make(1, 1, port=22), make(2, 1, port=80)],
            [
                make(3, 2, port=22, minutes=60, attributes=newer("9.3p1")),
                make(4, 2, port=80, minutes=60),
            ],
        ],
        [(2, 0, 2, 0, 2), (2, 0, 0, 1, 2)],
        _check_resighting,
    ),
    Scenario(
        "late older sighting changes no volatile field",
        [
            [make(1, 1, attributes=newer("v1"))],
            [make(2, 2, minutes=120, attributes=newer("v2"))],
            [make(3, 3, minutes=60, attributes=newer("v3"), severity="high", title="late")],
            [make(4, 4, minutes=-60, attributes=newer("v0"))],
        ],
        [(1, 0, 1, 0, 1), (1, 0, 0, 1, 1), (1, 0, 0, 0, 1), (1, 0, 0, 0, 1)],
        _check_late_older,
    ),
    Scenario(
        "two sightings of one finding in one batch, in two scans",
        [
            [
                make(1, 1, minutes=0, attributes=newer("a1")),
                make(2, 1, minutes=5, attributes=newer("a2")),
                make(3, 2, minutes=10, attributes=newer("b2")),
            ]
        ],
        [(3, 0, 1, 0, 2)],
        _check_two_scans,
    ),
    Scenario(
        "two sightings in a later batch, the newer one first",
        [
            [make(1, 1, minutes=0)],
            [
                make(2, 2, minutes=30, attributes=newer("x")),
                make(3, 3, minutes=20, attributes=newer("y")),
            ],
        ],
        [(1, 0, 1, 0, 1), (2, 0, 0, 1, 2)],
        lambda s: _assert_attributes(s, newer("x")),
    ),
    Scenario(
        "external scan created on first sight, coordinator's scan kept",
        [
            _create_scan,
            [
                make(1, 7, port=22, minutes=5),
                make(2, 7, port=80, minutes=1, tz_hours=2),
                make(3, 8, port=443, minutes=0),
            ],
            [make(4, 7, port=22, minutes=-30)],
        ],
        [(3, 0, 3, 0, 3), (1, 0, 0, 0, 0)],
        _check_external,
        conflicts=1,  # scan 7 observed port 22 in the first batch
    ),
    Scenario(
        "a fixed finding reopens on a newer sighting only",
        [
            [make(1, 1, port=22, minutes=10), make(2, 1, port=80, minutes=10)],
            _mark_fixed,
            [make(3, 2, port=22, minutes=20), make(4, 2, port=80, minutes=5)],
        ],
        [(2, 0, 2, 0, 2), (2, 0, 0, 0, 2)],
        _check_fixed,
    ),
    Scenario(
        "ties on observed_at: the smaller event id wins in a batch",
        [
            [
                make(9, 1, minutes=0, attributes=newer("nine")),
                make(5, 2, minutes=0, attributes=newer("five")),
            ],
        ],
        [(2, 0, 1, 0, 2)],
        lambda s: _assert_attributes(s, newer("five")),
    ),
    # The batch's newest sighting is a duplicate, dropped before the upsert: the latest of
    # what remains (an older sighting) must still reach the finding and its observation.
    Scenario(
        "the newest sighting in a batch is a redelivered duplicate",
        [
            [make(5, 1, minutes=10, attributes=newer("five"))],
            [make(6, 2, minutes=5, attributes=newer("six")), make(5, 1, minutes=10)],
        ],
        [(1, 0, 1, 0, 1), (2, 1, 0, 0, 1)],
        lambda s: _assert_attributes(s, newer("five")),
        conflicts=1,
    ),
    # Parity only: equal observed_at across batches (see the PostgreSQL writer's counts).
    Scenario(
        "equal observed_at in a later batch",
        [
            [make(1, 1, port=22), make(2, 1, port=80)],
            [make(3, 2, port=22, attributes=newer("same time")), make(4, 2, port=80)],
        ],
        None,
    ),
]


# -- running and reading back -----------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    """PostgreSQL gives aware datetimes; SQLite gives the stored UTC ones naive."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def snapshot(url: str) -> Snapshot:
    with session_scope(url) as session:
        assets = {a.id: a for a in session.scalars(select(Asset))}
        findings: dict[str, dict[str, Any]] = {}
        by_id: dict[int, str] = {}
        for f in session.scalars(select(Finding)):
            by_id[f.id] = f.fingerprint
            findings[f.fingerprint] = {
                "asset": assets[f.asset_id].key,
                **{
                    name: getattr(f, name)
                    for name in (
                        "kind",
                        "rule_id",
                        "transport",
                        "port",
                        "url",
                        "identity",
                        "title",
                        "severity",
                        "confidence",
                        "attributes",
                        "attr_hash",
                        "description",
                        "remediation",
                        "references",
                        "cwe",
                        "cve",
                        "cvss",
                        "status",
                        "last_scan_id",
                    )
                },
                "first_seen": _utc(f.first_seen),
                "last_seen": _utc(f.last_seen),
                "updated_at": _utc(f.updated_at),
                "evidence_of": [],
            }
        observations = set()
        for o in session.scalars(select(Observation).order_by(Observation.event_id)):
            fingerprint = by_id[o.finding_id]
            observations.add(
                (
                    o.scan_id,
                    fingerprint,
                    o.event_id,
                    o.task_id,
                    _utc(o.observed_at),
                    o.tool_name,
                    o.tool_version,
                    o.attr_hash,
                )
            )
            findings[fingerprint]["evidence_of"].append(o.evidence)
        return {
            "findings": findings,
            "observations": observations,
            "scans": {
                s.id: (s.origin, s.status, _utc(s.created_at))
                for s in session.scalars(select(Scan))
            },
            "assets": {a.key: (a.host, a.ip, _utc(a.first_seen)) for a in assets.values()},
            "events": {(e.event_id, e.scan_id) for e in session.scalars(select(IngestedEvent))},
        }


def run(url: str, writer: BatchWriter, steps: Sequence[Step]) -> list[BatchOutcome]:
    outcomes = []
    try:
        for step in steps:
            if callable(step):
                with session_scope(url) as session:
                    step(session)
            else:
                outcomes.append(writer.write(step))
    finally:
        writer.close()
    return outcomes


def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'scanfleet.db'}"
    upgrade(url)
    return url


def postgres_writer(database_url: str, *, direct: bool = True) -> PostgresBatchWriter:
    return PostgresBatchWriter(libpq_conninfo(database_url), direct=direct)


@pytest.mark.integration
@pytest.mark.parametrize("path", ["direct", "staged"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_same_batches_same_rows(
    scenario: Scenario, path: str, database_url: str, tmp_path: Path
) -> None:
    lite_url = sqlite_url(tmp_path)
    writer = postgres_writer(database_url, direct=path == "direct")
    pg = run(database_url, writer, scenario.steps)
    lite = run(lite_url, SqliteBatchWriter(lite_url), scenario.steps)

    assert writer.conflicts == (scenario.conflicts if path == "direct" else 0)
    assert lite == pg
    if scenario.expected is not None:
        assert [tuple(o.__dict__.values()) for o in pg] == scenario.expected
    pg_rows, lite_rows = snapshot(database_url), snapshot(lite_url)
    for table in pg_rows:
        assert lite_rows[table] == pg_rows[table], table
    scenario.check(lite_rows)


@pytest.mark.integration
def test_a_refused_record_fails_the_whole_batch_on_both(database_url: str, tmp_path: Path) -> None:
    lite_url = sqlite_url(tmp_path)
    good = make(1, 1, port=22)
    bad = make(2, 1, port=80)._replace(title=None)  # type: ignore[arg-type]  # NOT NULL
    for url, writer in (
        (database_url, postgres_writer(database_url)),
        (lite_url, SqliteBatchWriter(lite_url)),
    ):
        try:
            with pytest.raises(BatchRejected):
                writer.write([good, bad])
            empty = snapshot(url)
            assert not empty["findings"] and not empty["events"]
            assert not empty["scans"] and not empty["assets"]
            # Nothing was committed and the writer goes on: the good record alone passes.
            assert writer.write([good]) == BatchOutcome(1, 0, 1, 0, 1)
        finally:
            writer.close()
    assert snapshot(lite_url) == snapshot(database_url)


@pytest.mark.integration
def test_postgres_stays_staged_for_a_while_after_a_conflict(database_url: str) -> None:
    """A conflict sends the next few batches to the staged path (a redelivered backlog
    tends to come in runs), then the direct path is tried again."""
    writer = postgres_writer(database_url)
    writer.STAGED_AFTER_CONFLICT = 2
    port = iter(range(1000, 2000))

    def batch(*redelivered: int, scan_n: int = 1) -> list[IngestRecord]:
        fresh = [make(next(port) + 10_000, scan_n, port=next(port)) for _ in range(2)]
        return fresh + [make(n, scan_n, port=n) for n in redelivered]

    try:
        assert writer.write(batch(1, 2)).duplicates == 0  # direct
        assert writer.write(batch(1)).duplicates == 1  # conflict: written staged
        assert writer.conflicts == 1
        assert writer.write(batch(2)).duplicates == 1  # staged (1 of 2): no attempt
        assert writer.write(batch()).duplicates == 0  # staged (2 of 2)
        assert writer.conflicts == 1
        assert writer.write(batch(1, 2)).duplicates == 2  # direct again: a conflict
        assert writer.conflicts == 2
    finally:
        writer.close()
    rows = snapshot(database_url)
    assert len(rows["events"]) == 2 + 5 * 2
    assert len(rows["observations"]) == len(rows["findings"]) == 12


@pytest.mark.integration
def test_postgres_concurrent_writers_of_overlapping_batches(database_url: str) -> None:
    """Consumers that get the same events (a redelivery while the first still commits)
    and sight the same findings write each event once and each (scan, finding) once."""
    batches = [
        [make(100 * b + p, b % 2, port=p, minutes=b) for p in range(1, 41)] for b in range(6)
    ]

    def ingest(worker: int) -> list[BatchOutcome]:
        writer = postgres_writer(database_url, direct=worker % 2 == 0)
        outcomes = []
        try:
            for records in batches[worker % 3 :] + batches[: worker % 3]:
                for attempt in range(5):
                    try:
                        outcomes.append(writer.write(records))
                        break
                    except TransientError:  # a deadlock between two attempts: retried
                        if attempt == 4:
                            raise
        finally:
            writer.close()
        return outcomes

    with ThreadPoolExecutor(4) as pool:
        outcomes = [o for batch in pool.map(ingest, range(4)) for o in batch]
    assert sum(o.events for o in outcomes) == 4 * 240
    assert sum(o.events - o.duplicates for o in outcomes) == 240
    assert sum(o.findings_created for o in outcomes) == 40
    assert sum(o.observations_created for o in outcomes) == 2 * 40
    rows = snapshot(database_url)
    assert len(rows["events"]) == 240
    assert len(rows["findings"]) == 40
    assert len(rows["observations"]) == 2 * 40
    for finding in rows["findings"].values():
        assert finding["last_seen"] == T0 + timedelta(minutes=5)
        assert finding["last_scan_id"] == scan(1)


@pytest.mark.integration
def test_nul_byte_refused_by_postgresql_stored_by_sqlite(database_url: str, tmp_path: Path) -> None:
    """A known difference: PostgreSQL text cannot hold NUL, SQLite stores it as is."""
    record = make(1, 1, title="Open\x00port")
    writer = postgres_writer(database_url)
    try:
        with pytest.raises(BatchRejected, match="0x00"):
            writer.write([record])
    finally:
        writer.close()

    lite_url = sqlite_url(tmp_path)
    assert SqliteBatchWriter(lite_url).write([record]) == BatchOutcome(1, 0, 1, 0, 1)
    assert snapshot(lite_url)["findings"][record.fingerprint]["title"] == "Open\x00port"


@pytest.mark.integration
def test_jsonb_rewrites_large_floats_sqlite_keeps_them(database_url: str, tmp_path: Path) -> None:
    """A known difference: jsonb keeps 1e23 as the decimal 10**23, read back as an int."""
    record = make(1, 1, attributes={"n": 1e23})
    lite_url = sqlite_url(tmp_path)
    run(database_url, postgres_writer(database_url), [[record]])
    run(lite_url, SqliteBatchWriter(lite_url), [[record]])
    assert snapshot(database_url)["findings"][record.fingerprint]["attributes"] == {"n": 10**23}
    assert snapshot(lite_url)["findings"][record.fingerprint]["attributes"] == {"n": 1e23}


# -- SQLite alone -------------------------------------------------------------------------


def test_sqlite_json_columns_read_back_as_the_event_carried_them(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    attributes = {"service": "ssh", "nested": {"list": [1, 2.5, None, True]}, "text": "é ✓"}
    record = make(
        1,
        1,
        attributes=attributes,
        identity={"extra": "key", "n": 3},
        references=["https://example.org/a"],
        cwe=["CWE-200"],
        cve=["CVE-2024-12345"],
        cvss=5.3,
    )
    SqliteBatchWriter(url).write([record])
    with session_scope(url) as session:
        finding = session.scalars(select(Finding)).one()
        observation = session.scalars(select(Observation)).one()
        assert finding.attributes == attributes
        assert finding.identity == {"extra": "key", "n": 3}
        assert finding.references == ["https://example.org/a"]
        assert finding.cwe == ["CWE-200"]
        assert finding.cve == ["CVE-2024-12345"]
        assert finding.cvss == 5.3
        assert observation.evidence == json.loads(record.evidence)
    with closing(sqlite3.connect(tmp_path / "scanfleet.db")) as raw:
        stored = raw.execute("SELECT attributes, typeof(attributes) FROM findings").fetchone()
    assert stored == (record.attributes, "text")  # the record's JSON text, not re-encoded


def test_sqlite_timestamps_are_stored_in_utc(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    SqliteBatchWriter(url).write([make(1, 1, minutes=0, tz_hours=2), make(2, 1, minutes=1)])
    with closing(sqlite3.connect(tmp_path / "scanfleet.db")) as raw:
        row = raw.execute("SELECT first_seen, last_seen FROM findings").fetchone()
    assert row == ("2026-11-21 09:30:00.000000", "2026-11-21 09:31:00.000000")


def test_sqlite_empty_batch_touches_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert SqliteBatchWriter(url).write([]) == BatchOutcome(0, 0, 0, 0, 0)


def test_sqlite_locked_database_is_transient(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    engine = get_engine(url)
    # This engine's connections give up on a held lock after 50 ms instead of 30 s.
    event.listen(engine, "connect", lambda conn, _rec: conn.execute("PRAGMA busy_timeout=50"))
    engine.dispose()
    writer = SqliteBatchWriter(url)
    holder = sqlite3.connect(tmp_path / "scanfleet.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientError, match="locked"):
            writer.write([make(1, 1)])
        holder.execute("ROLLBACK")
        assert writer.write([make(1, 1)]) == BatchOutcome(1, 0, 1, 0, 1)
    finally:
        holder.close()
        writer.close()


def test_sqlite_concurrent_writers_serialise(tmp_path: Path) -> None:
    """Writers in threads (or processes) take turns on the write lock; nothing is lost."""
    url = sqlite_url(tmp_path)
    ports = range(1, 21)

    def ingest(worker: int) -> list[BatchOutcome]:
        writer = SqliteBatchWriter(url)
        try:
            return [
                writer.write([make(1000 * worker + 100 * b + p, b, port=p) for p in ports])
                for b in range(5)
            ]
        finally:
            writer.close()

    with ThreadPoolExecutor(4) as pool:
        outcomes = [o for batch in pool.map(ingest, range(4)) for o in batch]
    assert sum(o.events for o in outcomes) == 400
    assert sum(o.findings_created for o in outcomes) == len(ports)
    assert sum(o.observations_created for o in outcomes) == 5 * len(ports)
    rows = snapshot(url)
    assert len(rows["findings"]) == len(ports)
    assert len(rows["events"]) == 400


def test_sqlite_writer_needs_a_sqlite_url() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        SqliteBatchWriter("postgresql://nobody@127.0.0.1:1/none")


def _ids_drawn(conninfo: str) -> int:
    """How many finding ids the sequence has handed out."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM findings_id_seq"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.integration
def test_postgres_updates_known_findings_by_id(database_url: str) -> None:
    """A re-sighted finding is updated through its id, whether the writer remembers it or
    looks it up by fingerprint: no id is drawn for it (an upsert by fingerprint draws one
    for every row it is offered), and the rows are those of the staged path."""
    conninfo = libpq_conninfo(database_url)
    ports = range(1, 41)
    first = [make(p, 1, port=p) for p in ports]
    # One in four with changed volatile attributes: "updated"; the rest "unchanged".
    second = [
        make(100 + p, 2, port=p, minutes=5, attributes=newer("9.9") if p % 4 == 0 else None)
        for p in ports
    ]
    third = [make(200 + p, 3, port=p, minutes=10) for p in ports]
    writer = postgres_writer(database_url)
    other = postgres_writer(database_url)  # knows none of the findings
    try:
        assert writer.write(first) == BatchOutcome(40, 0, 40, 0, 40)
        drawn = _ids_drawn(conninfo)
        assert drawn == 40
        assert writer.write(second) == BatchOutcome(40, 0, 0, 10, 40)
        assert other.write(third) == BatchOutcome(40, 0, 0, 10, 40)
        assert _ids_drawn(conninfo) == drawn
        assert writer.conflicts == other.conflicts == 0
    finally:
        writer.close()
        other.close()
    rows = snapshot(database_url)
    assert len(rows["findings"]) == 40
    assert len(rows["observations"]) == 120
    for finding in rows["findings"].values():
        assert finding["last_seen"] == T0 + timedelta(minutes=10)
        assert finding["last_scan_id"] == scan(3)
        assert len(finding["evidence_of"]) == 3


@pytest.mark.integration
def test_postgres_finding_created_by_a_concurrent_batch(database_url: str) -> None:
    """A new finding that another transaction creates between the direct path's look-up
    and its upsert is a conflict: the batch is written again by the staged path, which
    updates the finding the other one created."""
    conninfo = libpq_conninfo(database_url)
    record = make(1, 1, port=443, minutes=30)
    with psycopg.connect(conninfo) as setup:  # the asset and the scan, committed
        asset_id = setup.execute(
            "INSERT INTO assets (key, ip, first_seen) VALUES (%s, %s, now()) RETURNING id",
            (record.asset_key, record.ip),
        ).fetchone()[0]  # type: ignore[index]
        setup.execute(
            "INSERT INTO scans (id, origin, status, created_at) "
            "VALUES (%s, 'external', 'external', now())",
            (record.scan_id,),
        )
    other = psycopg.connect(conninfo)
    writer = PostgresBatchWriter(conninfo, application_name="writer-under-test")
    try:
        # The other transaction creates the finding and holds it uncommitted.
        other.execute(
            """
            INSERT INTO findings (fingerprint, kind, rule_id, asset_id, transport, port,
                identity, title, severity, confidence, attributes, attr_hash, status,
                first_seen, last_seen, updated_at)
            VALUES (%s, %s, %s, %s, 'tcp', 443, '{}', 'Open port', 'info', 'high', '{}',
                'before', 'open', %s, %s, %s)
            """,
            (record.fingerprint, record.kind, record.rule_id, asset_id, T0, T0, T0),
        )
        with ThreadPoolExecutor(1) as pool:
            written = pool.submit(writer.write, [record])
            with psycopg.connect(conninfo, autocommit=True) as watch:
                for _ in range(500):  # until the writer waits for the other transaction
                    row = watch.execute(
                        "SELECT wait_event_type FROM pg_stat_activity "
                        "WHERE application_name = 'writer-under-test' AND state = 'active'"
                    ).fetchone()
                    if row and row[0] == "Lock":
                        break
                    assert not written.done(), written.result()
                    time.sleep(0.01)
                else:
                    pytest.fail("the writer never waited for the other transaction")
            other.commit()
            outcome = written.result(timeout=30)
        assert writer.conflicts == 1
        assert outcome == BatchOutcome(1, 0, 0, 1, 1)
    finally:
        writer.close()
        other.close()
    rows = snapshot(database_url)
    assert list(rows["findings"]) == [record.fingerprint]
    stored = rows["findings"][record.fingerprint]
    assert stored["first_seen"] == T0
    assert stored["last_seen"] == T0 + timedelta(minutes=30)
    assert stored["attr_hash"] == record.attr_hash


@pytest.mark.integration
def test_postgres_caches_full_mid_batch(database_url: str) -> None:
    """Caches that reach their bound are emptied between batches, never while a batch still
    needs what they hold: a batch that sights a cached asset beside new ones, past the
    bound, is written whole."""
    writer = PostgresBatchWriter(libpq_conninfo(database_url), cache_size=2, finding_cache_size=2)
    try:
        assert writer.write([make(1, 1, port=22, ip="127.0.0.1")]) == BatchOutcome(1, 0, 1, 0, 1)
        second = [
            make(2, 2, port=22, ip="127.0.0.1", minutes=1),
            make(3, 2, port=22, ip="127.0.0.2", minutes=1),
            make(4, 2, port=22, ip="127.0.0.3", minutes=1),
        ]
        assert writer.write(second) == BatchOutcome(3, 0, 2, 0, 3)
        third = [make(5 + n, 3, port=22, ip=f"127.0.0.{n + 1}", minutes=2) for n in range(4)]
        assert writer.write(third) == BatchOutcome(4, 0, 1, 0, 4)
    finally:
        writer.close()
    rows = snapshot(database_url)
    assert len(rows["assets"]) == len(rows["findings"]) == 4
    assert len(rows["observations"]) == 8
