"""Applying task events, cancelling scans, and the sweep that keeps scans truthful.

A task event moves its task (and frees its lease when the task ended or was handed
back); when a scan's last task ends the scan gets its end state. Cancelling a scan
cancels the tasks that have not started and asks running ones to stop (their workers
hear it on their next heartbeat). The sweep ends scans that ran past their max wall
time and any running scan whose tasks are all over, so no scan stays "running" after
its last task ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session

from contracts.scan import ScanEvent, ScanEventType
from contracts.task import TaskEvent, TaskEventType
from coordinator.admission import retry_policy
from storage.database import session_scope
from storage.leases import (
    cancel_scan_tasks,
    has_waiting,
    leased_session,
    overdue_scans,
    settled_scans,
)
from storage.models import Scan
from storage.scans import apply_task_event, finish_scan_if_done

log = structlog.get_logger("scanfleet.coordinator")

_END_EVENTS = {
    "completed": ScanEventType.FINISHED,
    "partial": ScanEventType.FINISHED,
    "failed": ScanEventType.FAILED,
    "cancelled": ScanEventType.CANCELLED,
}


@dataclass(frozen=True)
class Applied:
    #: The scan's end event, when this task event ended the scan.
    scan_event: ScanEvent | None = None
    #: The target whose lease was freed: its waiting tasks may be admitted now.
    freed_target: str | None = None


def end_event(scan: Scan) -> ScanEvent:
    log.info("scan_ended", scan_id=str(scan.id), status=scan.status)
    return ScanEvent(
        scan_id=scan.id,
        type=_END_EVENTS[scan.status],
        at=datetime.now(UTC),
        complete=scan.status == "completed",
        reason=scan.reason,
    )


def _finish(session: Session, scan_id: uuid.UUID) -> ScanEvent | None:
    scan = finish_scan_if_done(session, scan_id)
    return end_event(scan) if scan is not None else None


def handle_task_event(database_url: str, event: TaskEvent) -> Applied:
    """Apply one task event in one transaction."""
    with session_scope(database_url) as session:
        task = apply_task_event(session, event, retry_policy())
        if task is None:
            log.warning("task_event_for_unknown_task", task_id=str(event.task_id))
            return Applied()
        ended = event.type in (TaskEventType.FINISHED, TaskEventType.RELEASED)
        # Only worth an admission pass (and its lock) when the target has tasks waiting.
        freed = None
        if ended and task.target_key and has_waiting(session, task.target_key):
            freed = task.target_key
        return Applied(_finish(session, event.scan_id), freed)


@dataclass(frozen=True)
class Cancelled:
    found: bool
    #: Tasks cancelled before they ran, and running tasks asked to stop.
    cancelled: int = 0
    stopping: int = 0
    status: str | None = None
    scan_event: ScanEvent | None = None


def cancel_scan(
    database_url: str, scan_id: uuid.UUID, *, by: str, reason: str = "cancelled"
) -> Cancelled:
    now = datetime.now(UTC)
    with leased_session(database_url) as session:
        scan = session.get(Scan, scan_id, with_for_update=True)
        if scan is None:
            return Cancelled(False)
        if scan.status not in ("pending", "running"):
            return Cancelled(True, status=scan.status)
        scan.cancel_requested_at = now
        scan.cancelled_by = by[:256]
        cancelled, stopping = cancel_scan_tasks(session, scan_id, f"{reason} by {by}", now)
        event = _finish(session, scan_id)
        log.info(
            "scan_cancel_requested",
            scan_id=str(scan_id),
            cancelled=cancelled,
            stopping=stopping,
            by=by,
        )
        return Cancelled(True, cancelled, stopping, scan.status, event)


def sweep(database_url: str) -> list[ScanEvent]:
    """End overdue scans (max wall time) and running scans whose tasks are all over."""
    events: list[ScanEvent] = []
    now = datetime.now(UTC)
    with session_scope(database_url) as session:
        overdue = [(s.id, s.deadline_at) for s in overdue_scans(session, now)]
    for scan_id, deadline in overdue:
        log.warning("scan_wall_time_exceeded", scan_id=str(scan_id), deadline=str(deadline))
        result = cancel_scan(
            database_url, scan_id, by="the scan's max wall time", reason="wall time exceeded"
        )
        if result.scan_event is not None:
            events.append(result.scan_event)
    with session_scope(database_url) as session:
        for scan_id in settled_scans(session):
            event = _finish(session, scan_id)
            if event is not None:
                log.warning("scan_ended_by_sweep", scan_id=str(scan_id))
                events.append(event)
    return events
