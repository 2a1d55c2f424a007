"""``scanfleet coordinator`` as a process: task events move scans to their end state, and a
PostgreSQL restart under it loses no event."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pika
import pytest
from sqlalchemy import update

from contracts.task import TaskEvent, TaskEventType, TaskStatus
from coordinator.service import TASK_EVENTS_EXCHANGE, declare
from storage.database import session_scope
from storage.models import Task
from storage.scans import NewTask, add_tasks, create_scan, mark_dispatched, task_rows
from tests.integration.services import REPO_ROOT, try_scalar, wait_for
from tests.integration.test_ingest_faults import _restart_postgresql

pytestmark = pytest.mark.integration


def test_coordinator_applies_task_events_across_a_postgresql_restart(
    database_url: str, vhost: str, tmp_path: Path
) -> None:
    broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    scan_id = uuid.uuid4()
    task_ids = [uuid.uuid4(), uuid.uuid4()]
    with session_scope(database_url) as session:
        create_scan(session, scan_id, targets=["127.0.0.1"], tools=["tcp-ports"])
        add_tasks(
            session,
            task_rows(
                scan_id,
                [
                    NewTask(
                        task_id, target, "tcp-ports", "default", {}, target, "standard", 2, 10.0, 60
                    )
                    for task_id, target in zip(task_ids, ["127.0.0.1", "127.0.0.2"], strict=True)
                ],
            ),
        )
        # As if admitted and claimed by a worker: first attempt, running.
        session.execute(
            update(Task).where(Task.scan_id == scan_id).values(status="running", attempts=1)
        )
        mark_dispatched(session, scan_id)
    env = dict(os.environ, SCANFLEET_DATABASE_URL=database_url, SCANFLEET_BROKER_URL=broker_url)
    log = tmp_path / "coordinator.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "coordinator"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    declare(channel)

    def send(task_id: uuid.UUID, status: TaskStatus) -> None:
        event = TaskEvent(
            task_id=task_id,
            scan_id=scan_id,
            type=TaskEventType.FINISHED,
            at=datetime.now(UTC),
            status=status,
            exit_code=0,
            findings_count=0,
        )
        channel.basic_publish(
            TASK_EVENTS_EXCHANGE,
            "task.finished",
            event.model_dump_json().encode(),
            pika.BasicProperties(delivery_mode=2),
        )

    try:
        wait_for(lambda: "coordinator_consuming" in log.read_text(), 30, what="the coordinator")
        send(task_ids[0], TaskStatus.SUCCEEDED)
        wait_for(
            lambda: (
                try_scalar(
                    database_url,
                    f"SELECT count(*) FROM tasks WHERE status = 'succeeded' AND scan_id = '{scan_id}'",  # noqa: E501,
                )
                == 1
            ),
            30,
        )
        _restart_postgresql()
        send(task_ids[1], TaskStatus.FAILED)
        wait_for(
            lambda: (
                try_scalar(database_url, f"SELECT status FROM scans WHERE id = '{scan_id}'")
                == "partial"
            ),
            60,
            what="the scan to end as partial",
        )
        assert process.poll() is None, log.read_text()
    finally:
        connection.close()
        process.terminate()
        process.wait(timeout=30)
