"""Queries of the scans aggregate: scans, their tasks, and their lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from contracts.task import TaskEvent, TaskEventType, TaskStatus
from storage.leases import RetryPolicy, cancel_scan_tasks, cancel_task, retry_or_fail
from storage.models import IngestedEvent, Observation, Scan, Task

FINAL_TASK_STATES = [s.value for s in TaskStatus if s.final]


def create_scan(
    session: Session,
    scan_id: uuid.UUID,
    *,
    targets: list[str],
    tools: list[str],
    profile: str = "default",
    requested_by: str | None = None,
    request_id: uuid.UUID | None = None,
    labels: dict[str, str] | None = None,
    config_hash: str | None = None,
    budget: dict[str, Any] | None = None,
    max_wall_s: int | None = None,
) -> Scan:
    """A new scan, ``pending`` while its tasks are being dispatched."""
    now = datetime.now(UTC)
    scan = Scan(
        id=scan_id,
        origin="scanfleet",
        status="pending",
        profile=profile,
        budget=budget,
        deadline_at=now + timedelta(seconds=max_wall_s) if max_wall_s else None,
        request_id=request_id,
        requested_by=requested_by,
        targets=targets[:1000],
        tools=tools,
        labels=labels or {},
        config_hash=config_hash,
        created_at=now,
        started_at=now,
    )
    session.add(scan)
    session.flush()
    return scan


def add_tasks(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert task rows: COPY on PostgreSQL (a large scan's plan), INSERT elsewhere."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(Task), list(rows))
        return
    from psycopg.types.json import Jsonb

    columns = list(rows[0])
    json_columns = {"options", "argv"}
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY tasks ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_columns else row[c] for c in columns])


def record_refusals(session: Session, scan_id: uuid.UUID, refusals: list[str]) -> None:
    if refusals:
        session.execute(
            update(Scan).where(Scan.id == scan_id).values(reason="; ".join(refusals)[:8000])
        )


def mark_dispatched(
    session: Session, scan_id: uuid.UUID, *, created_here: Scan | None = None
) -> Scan | None:
    """Every task of the scan is persisted: it is running (or already over).

    A scan cancelled while it was being dispatched has its late tasks cancelled too.
    ``created_here`` is the scan when this transaction created it and added tasks: no one
    else has seen it, so no one can have cancelled it or ended a task of it.
    """
    if created_here is not None:
        created_here.status = "running"
        return None
    scan = session.get(Scan, scan_id, with_for_update=True)
    if scan is None or scan.status != "pending":
        return None
    scan.status = "running"
    if scan.cancel_requested_at is not None:
        cancel_scan_tasks(session, scan_id, f"cancelled by {scan.cancelled_by}", datetime.now(UTC))
    session.flush()
    return finish_scan_if_done(session, scan_id)


def apply_task_event(
    session: Session, event: TaskEvent, policy: RetryPolicy | None = None
) -> Task | None:
    """Move a task along its lifecycle; stale or repeated events change nothing.

    An event of an earlier attempt than the task's current one is stale (its worker was
    given up on and the task admitted again) and is ignored.
    """
    task = session.get(Task, event.task_id, with_for_update=True)
    if task is None:
        return None
    if task.status in FINAL_TASK_STATES or event.attempt != task.attempts:
        return task
    if event.type is TaskEventType.STARTED:
        # The worker's claim already made the task running; the event adds what it ran.
        task.worker = event.worker or task.worker
        if event.argv is not None:
            task.argv = event.argv
    elif event.type is TaskEventType.FINISHED:
        task.status = (event.status or TaskStatus.FAILED).value
        task.finished_at = event.at
        task.started_at = task.started_at or event.at
        task.exit_code = event.exit_code
        task.reason = event.reason
        task.findings_count = event.findings_count
        task.artifact_ref = event.artifact_ref
        task.worker = event.worker or task.worker
        task.lease_expires_at = None
        task.rps_allocated = None
        if event.tool is not None:
            task.tool_version = event.tool.version
        if event.config_hash is not None:
            task.config_hash = event.config_hash
        if event.argv is not None:
            task.argv = event.argv
        if event.status is not TaskStatus.SUCCEEDED:
            task.last_error = event.reason
    elif event.type is TaskEventType.RELEASED:
        reason = event.reason or "handed back by its worker"
        if task.cancel_requested:
            cancel_task(task, "cancelled", event.at)
        elif policy is not None:
            retry_or_fail(task, reason, event.at, policy, failure=bool(event.transient_failure))
    session.flush()
    return task


def finish_scan_if_done(session: Session, scan_id: uuid.UUID) -> Scan | None:
    """If every task of the scan is final, give the scan its end state; return it then."""
    scan = session.get(Scan, scan_id, with_for_update=True)
    if scan is None or scan.status != "running":
        return None
    counts = dict(
        session.execute(
            select(Task.status, func.count()).where(Task.scan_id == scan_id).group_by(Task.status)
        ).all()
    )
    if any(status not in FINAL_TASK_STATES for status in counts):
        return None
    total = sum(counts.values())
    succeeded = counts.get(TaskStatus.SUCCEEDED.value, 0)
    if counts.get(TaskStatus.CANCELLED.value) or scan.cancel_requested_at is not None:
        scan.status = "cancelled"
    elif succeeded == total:
        scan.status = "completed"
    elif succeeded == 0:
        scan.status = "failed"
    else:
        scan.status = "partial"
    if scan.status != "completed":
        scan.reason = _end_reason(session, scan, total - succeeded, total)
    versions = dict(
        session.execute(
            select(Task.tool, func.max(Task.tool_version))
            .where(Task.scan_id == scan_id)
            .group_by(Task.tool)
        ).all()
    )
    scan.tool_versions = {k: v for k, v in versions.items() if v}
    scan.finished_at = datetime.now(UTC)
    session.flush()
    return scan


def _end_reason(session: Session, scan: Scan, unsuccessful: int, total: int) -> str:
    """Which tasks did not succeed and why (the first 20), after any refusals."""
    rows = session.execute(
        select(Task.tool, Task.target, Task.status, Task.reason)
        .where(Task.scan_id == scan.id, Task.status != TaskStatus.SUCCEEDED.value)
        .order_by(Task.target, Task.tool)
        .limit(20)
    ).all()
    lines = [
        f"{tool} on {target}: {status} ({reason or 'no reason given'})"
        for tool, target, status, reason in rows
    ]
    parts = [scan.reason] if scan.reason else []
    if scan.cancelled_by:
        parts.append(f"cancelled by {scan.cancelled_by}")
    if total:
        parts.append(f"{unsuccessful} of {total} task(s) did not succeed: " + "; ".join(lines))
    return "; ".join(parts)[:8000]


@dataclass(frozen=True)
class ScanSummary:
    id: uuid.UUID
    status: str
    origin: str
    created_at: datetime
    finished_at: datetime | None
    tasks: dict[str, int]
    findings: int
    events: int
    reason: str | None
    tools: list[str]
    tool_versions: dict[str, str]
    config_hash: str | None
    targets: list[str]
    profile: str | None = None
    budget: dict[str, Any] | None = None
    requested_by: str | None = None
    deadline_at: datetime | None = None
    cancelled_by: str | None = None

    @property
    def tasks_total(self) -> int:
        return sum(self.tasks.values())

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["id"] = str(self.id)
        data["created_at"] = self.created_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["deadline_at"] = self.deadline_at.isoformat() if self.deadline_at else None
        return data


def scan_summary(session: Session, scan_id: uuid.UUID) -> ScanSummary | None:
    scan = session.get(Scan, scan_id)
    if scan is None:
        return None
    tasks = dict(
        session.execute(
            select(Task.status, func.count()).where(Task.scan_id == scan_id).group_by(Task.status)
        ).all()
    )
    findings = session.scalar(
        select(func.count()).select_from(Observation).where(Observation.scan_id == scan_id)
    )
    events = session.scalar(
        select(func.count()).select_from(IngestedEvent).where(IngestedEvent.scan_id == scan_id)
    )
    return ScanSummary(
        id=scan.id,
        status=scan.status,
        origin=scan.origin,
        created_at=scan.created_at,
        finished_at=scan.finished_at,
        tasks={str(k): int(v) for k, v in tasks.items()},
        findings=int(findings or 0),
        events=int(events or 0),
        reason=scan.reason,
        tools=list(scan.tools or []),
        tool_versions=dict(scan.tool_versions or {}),
        config_hash=scan.config_hash,
        targets=list(scan.targets or []),
        profile=scan.profile,
        budget=scan.budget,
        requested_by=scan.requested_by,
        deadline_at=scan.deadline_at,
        cancelled_by=scan.cancelled_by,
    )


def list_scans(session: Session, limit: int = 50) -> list[ScanSummary]:
    ids = session.scalars(select(Scan.id).order_by(Scan.created_at.desc()).limit(limit)).all()
    return [s for s in (scan_summary(session, i) for i in ids) if s is not None]


def list_tasks(session: Session, scan_id: uuid.UUID) -> list[Task]:
    return list(
        session.scalars(
            select(Task)
            .where(Task.scan_id == scan_id)
            .order_by(Task.created_at, Task.target, Task.tool)
        )
    )


def expected_events(session: Session, scan_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Task.findings_count), 0)).where(Task.scan_id == scan_id)
        )
        or 0
    )


@dataclass(frozen=True)
class NewTask:
    """A planned task with its target's effective budget."""

    id: uuid.UUID
    target: str
    tool: str
    pool: str
    options: dict[str, Any]
    target_key: str
    budget_class: str
    max_concurrency: int
    rps: float | None
    max_runtime_s: int


def task_rows(scan_id: uuid.UUID, planned: Iterable[NewTask]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "id": task.id,
            "scan_id": scan_id,
            "target": task.target,
            "tool": task.tool,
            "pool": task.pool,
            "status": TaskStatus.PENDING.value,
            "attempts": 0,
            "options": task.options,
            "target_key": task.target_key,
            "budget_class": task.budget_class,
            "max_concurrency": task.max_concurrency,
            "rps": task.rps,
            "max_runtime_s": task.max_runtime_s,
            "cancel_requested": False,
            "created_at": now,
            "admitted_at": None,
            "lease_expires_at": None,
            "rps_allocated": None,
        }
        for task in planned
    ]
