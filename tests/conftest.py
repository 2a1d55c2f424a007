"""Fixtures shared by the integration and e2e tests: real PostgreSQL and RabbitMQ.

Each test session gets a database of its own (created, migrated, dropped) and each
test gets exchange and queue names of its own, so runs never see each other's data.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.integration.services import (
    ADMIN_URL,
    Topology,
    declare_topology,
    delete_topology,
)


def _create_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def _drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new database with no schema at all."""
    name = f"scanfleet_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(name)
    try:
        yield url
    finally:
        _drop_database(name)


@pytest.fixture
def database_url(empty_database: str) -> str:
    """A new database migrated to the head revision."""
    from storage.migrate import upgrade

    upgrade(empty_database)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return empty_database


@pytest.fixture
def topology() -> Iterator[Topology]:
    suffix = uuid.uuid4().hex[:10]
    names = Topology(exchange=f"test.findings.{suffix}", queue=f"test.ingest.{suffix}")
    declare_topology(names)
    try:
        yield names
    finally:
        delete_topology(names)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ vhost of the test's own, so fixed queue names never collide."""
    name = f"scanfleet-e2e-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        timeout=60,
    )
    try:
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, timeout=60)
