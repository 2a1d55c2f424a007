"""Alembic migrations are the only way the schema changes: they run both ways on both
databases, and the models never drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from storage.database import get_engine
from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base, Observation

TABLES = {
    "assets",
    "scans",
    "tasks",
    "findings",
    "observations",
    "ingested_events",
    "artifacts",
    "audit_log",
    "alembic_version",
}


def _check_round_trip(url: str) -> None:
    upgrade(url)
    assert current_revision(url) == head_revision(url)
    engine = get_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert current_revision(url) == head_revision(url)


def test_migrations_run_up_and_down_on_sqlite(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'scanfleet.db'}")


@pytest.mark.integration
def test_migrations_run_up_and_down_on_postgresql(empty_database: str) -> None:
    _check_round_trip(empty_database)
    unique = {
        c["name"] for c in inspect(get_engine(empty_database)).get_unique_constraints("findings")
    }
    assert unique, "findings.fingerprint must be unique"


def _check_0004_keeps_observations(url: str) -> None:
    """0004 rebuilds observations (a new key, evidence as text): its rows survive both ways."""
    upgrade(url, "0003")
    engine = get_engine(url)
    row = {
        "finding_id": 7,
        "scan_id": "5ca40000-0000-4000-8000-000000000001",
        "event_id": "e0e00000-0000-4000-8000-000000000001",
        "observed_at": "2026-11-21 09:30:00+00:00",
        "tool_name": "nmap",
        "tool_version": "7.93",
        "attr_hash": "a" * 64,
        "evidence": '[{"type": "text", "content": "kept"}]',
    }
    insert = text(
        "INSERT INTO observations (finding_id, scan_id, event_id, observed_at, tool_name, "
        "tool_version, attr_hash, evidence) VALUES (:finding_id, :scan_id, :event_id, "
        ":observed_at, :tool_name, :tool_version, :attr_hash, :evidence)"
    )
    with engine.begin() as connection:
        connection.execute(insert, row)
    upgrade(url)
    with Session(engine) as session:
        (observation,) = session.scalars(select(Observation)).all()
        assert observation.finding_id == 7
        assert observation.evidence == [{"type": "text", "content": "kept"}]
    downgrade(url, "0003")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT finding_id, evidence FROM observations")).all()
    assert [(r[0], json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows] == [
        (7, [{"type": "text", "content": "kept"}])
    ]
    upgrade(url)


def test_0004_keeps_observations_on_sqlite(tmp_path: Path) -> None:
    _check_0004_keeps_observations(f"sqlite:///{tmp_path / 'scanfleet.db'}")


@pytest.mark.integration
def test_0004_keeps_observations_on_postgresql(empty_database: str) -> None:
    _check_0004_keeps_observations(empty_database)
