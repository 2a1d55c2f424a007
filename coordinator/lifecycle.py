"""Applying task events: tasks move through their states, scans reach their end state."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from contracts.scan import ScanEvent, ScanEventType
from contracts.task import TaskEvent
from storage.database import session_scope
from storage.scans import apply_task_event, finish_scan_if_done

log = structlog.get_logger("scanfleet.coordinator")

_END_EVENTS = {
    "completed": ScanEventType.FINISHED,
    "partial": ScanEventType.FINISHED,
    "failed": ScanEventType.FAILED,
    "cancelled": ScanEventType.CANCELLED,
}


def handle_task_event(database_url: str, event: TaskEvent) -> ScanEvent | None:
    """Apply one task event; returns the scan's end event when this one ended the scan."""
    with session_scope(database_url) as session:
        task = apply_task_event(session, event)
        if task is None:
            log.warning("task_event_for_unknown_task", task_id=str(event.task_id))
            return None
        scan = finish_scan_if_done(session, event.scan_id)
        if scan is None:
            return None
        log.info("scan_ended", scan_id=str(scan.id), status=scan.status)
        return ScanEvent(
            scan_id=scan.id,
            type=_END_EVENTS[scan.status],
            at=datetime.now(UTC),
            complete=scan.status == "completed",
            reason=scan.reason,
        )
