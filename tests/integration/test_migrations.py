"""Alembic migrations are the only way the schema changes: they run both ways on both
databases, and the models never drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage.database import get_engine
from storage.migrate import current_revision, downgrade, head_revision, upgrade
from storage.models import Base

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
