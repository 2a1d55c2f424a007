"""Admission: waiting tasks get leases within their targets' budgets and are published.

Used by the dispatcher (a new scan's tasks), by the coordinator after each task event
(the slot the task freed) and on its tick (retries that are due, expired leases), and
by the embedded fleet, always the same way: take the lease lock, reap, admit, commit,
then publish with confirms. A grant whose message cannot be published is taken back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from contracts.errors import TransientError
from contracts.task import TaskMessage
from coordinator.settings import ScanSettings, get_scan_settings
from storage.leases import Grant, Reaped, RetryPolicy, admit, leased_session, reap, unadmit

log = structlog.get_logger("scanfleet.coordinator")

Publish = Callable[[Sequence[TaskMessage]], None]


def task_message(grant: Grant) -> TaskMessage:
    task = grant.task
    return TaskMessage(
        task_id=task.id,
        scan_id=task.scan_id,
        target=task.target,
        tool=task.tool,
        pool=task.pool,
        budget_class=task.budget_class or "standard",
        options=dict(task.options or {}),
        attempt=grant.attempt,
        time_limit_s=task.max_runtime_s or 300,
        rps=grant.rps,
        config_hash=task.config_hash,
    )


def retry_policy(settings: ScanSettings | None = None) -> RetryPolicy:
    settings = settings or get_scan_settings()
    return RetryPolicy(settings.max_attempts, settings.backoff)


def publish_grants(database_url: str, grants: list[Grant], publish: Publish) -> int:
    """Publish committed grants; take them back if publishing fails."""
    if not grants:
        return 0
    try:
        publish([task_message(g) for g in grants])
    except (TransientError, OSError) as exc:
        log.warning("publish_failed_leases_returned", tasks=len(grants), error=str(exc)[:300])
        with leased_session(database_url) as session:
            unadmit(session, grants)
        raise
    return len(grants)


def admit_and_publish(
    database_url: str, publish: Publish, *, target_keys: Iterable[str] | None = None
) -> int:
    with leased_session(database_url) as session:
        grants = admit(
            session,
            datetime.now(UTC),
            admitted_ttl=timedelta(seconds=get_scan_settings().admitted_ttl_s),
            target_keys=target_keys,
        )
    return publish_grants(database_url, grants, publish)


def tick(database_url: str, publish: Publish) -> Reaped:
    """The coordinator's periodic pass: reap expired leases, then admit what is due."""
    now = datetime.now(UTC)
    with leased_session(database_url) as session:
        reaped = reap(session, now, retry_policy())
    if reaped.retried or reaped.failed or reaped.cancelled:
        log.warning(
            "leases_reaped",
            retried=len(reaped.retried),
            failed=len(reaped.failed),
            cancelled=len(reaped.cancelled),
        )
    admit_and_publish(database_url, publish)
    return reaped
