"""Ingest survives its services restarting underneath it: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.services import (
    IngestProcess,
    Topology,
    encode,
    make_event,
    publish_backlog,
    queue_depth,
    try_scalar,
    wait_for,
)

pytestmark = pytest.mark.integration

TOTAL = 20000


def _restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120)


def _restart_postgresql() -> None:
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            versions[-1],
            "main",
            "restart",
            "--",
            "-m",
            "fast",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _committed(database_url: str) -> int:
    return try_scalar(database_url, "SELECT count(*) FROM ingested_events") or 0


def _run_with_restart(database_url: str, topology: Topology, tmp_path: Path, restart) -> str:
    scan_id = uuid.uuid4()
    publish_backlog(topology, (encode(make_event(i, scan_id)) for i in range(TOTAL)))
    # Small batches and one consumer keep the backlog busy while the service restarts.
    ingest = IngestProcess(database_url, topology, consumers=1, batch_size=50)
    ingest.extra_env["SCANFLEET_INGEST_PREFETCH"] = "100"
    ingest.start(tmp_path / "ingest.log")
    try:
        wait_for(lambda: _committed(database_url) > 0, 60, 0.01, "a first committed batch")
        restart()
        assert _committed(database_url) < TOTAL, "ingest finished before the restart"
        wait_for(
            lambda: _committed(database_url) == TOTAL,
            timeout=180,
            interval=0.2,
            what="every event after the restart",
        )
        assert ingest.alive(), ingest.log()
        assert ingest.stop() == 0
    finally:
        if ingest.alive():
            ingest.kill()
    assert try_scalar(database_url, "SELECT count(*) FROM findings") == TOTAL
    assert try_scalar(database_url, "SELECT count(*) FROM observations") == TOTAL
    assert queue_depth(topology.queue) == 0
    assert queue_depth(topology.dlq) == 0
    return ingest.log()


def test_rabbitmq_restart_during_ingest_is_survived(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    log = _run_with_restart(database_url, topology, tmp_path, _restart_rabbitmq)
    assert '"event":"broker_connection_lost"' in log


def test_postgresql_restart_during_ingest_is_survived(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    log = _run_with_restart(database_url, topology, tmp_path, _restart_postgresql)
    assert '"event":"database_unavailable"' in log
