"""Leases: a target's concurrency slots and rate, held by its admitted and running tasks.

A task holds a lease while it is ``admitted`` (published, waiting for a worker) or
``running`` (claimed by a worker, renewed by its heartbeats). Admission gives a pending
task a lease only when its target has a free slot and enough unallocated rate; the
allocated rate (``rps_allocated``) is what the task's tool may send. Every change of
leases happens under one lock (a PostgreSQL advisory lock held to the end of the
transaction; a process lock on SQLite, whose writers are serialised anyway), so two
coordinators never admit into the same free slot.

A worker claims its task (``admitted`` -> ``running``) only for the attempt its message
carries; a message of an earlier attempt, of a cancelled task, or a redelivered one
whose task another worker still holds, is not run. Leases that pass their expiry (a
worker lost, a message never started) are reclaimed by :func:`reap`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, any_, cast, func, or_, select, text, update
from sqlalchemy.orm import Session

from contracts.task import TaskStatus
from storage.database import session_scope
from storage.models import Scan, Task

HELD = (TaskStatus.ADMITTED.value, TaskStatus.RUNNING.value)
PENDING = TaskStatus.PENDING.value
#: Most tasks of one target looked at in one admission pass.
PER_TARGET_WINDOW = 256
_ADVISORY_KEY = 0x5CF1EE7
_LOCAL = threading.RLock()


def lock(session: Session) -> None:
    """Serialise lease changes until the end of the transaction.

    Also plans this transaction's statements for their actual parameters: psycopg
    prepares a statement run often, and PostgreSQL's generic plan for ``target_key =
    ANY($1)`` cannot hash the array, so it compares every row with every key.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(:key), "
                "set_config('plan_cache_mode', 'force_custom_plan', true)"
            ),
            {"key": _ADVISORY_KEY},
        )


@contextmanager
def leased_session(database_url: str) -> Iterator[Session]:
    """A transaction holding the lease lock until it has committed (or rolled back)."""
    with _LOCAL, session_scope(database_url) as session:
        lock(session)
        yield session


#: What admission reads of a waiting task: its budget, and what its message carries.
WAITING_COLUMNS = (
    Task.id,
    Task.scan_id,
    Task.target,
    Task.tool,
    Task.pool,
    Task.options,
    Task.target_key,
    Task.budget_class,
    Task.max_concurrency,
    Task.rps,
    Task.max_runtime_s,
    Task.attempts,
    Task.config_hash,
)


@dataclass
class Waiting:
    """A waiting task as admission sees it: a row of :data:`WAITING_COLUMNS`, or a new
    task's row about to be inserted."""

    id: uuid.UUID
    scan_id: uuid.UUID
    target: str
    tool: str
    pool: str
    options: dict[str, Any] | None
    target_key: str | None
    budget_class: str | None
    max_concurrency: int | None
    rps: float | None
    max_runtime_s: int | None
    attempts: int = 0
    config_hash: str | None = None


@dataclass(frozen=True)
class Grant:
    """A task admitted now: the attempt it runs as and the rate it may use."""

    task: Waiting
    attempt: int
    rps: float | None


@dataclass
class _Held:
    count: int = 0
    rps: float = 0.0


def _held_and_queued(session: Session, keys: Collection[str]) -> tuple[dict[str, _Held], set[str]]:
    """In one query: the leases held on each target, and the targets with tasks waiting."""
    is_held = Task.status.in_(HELD)
    rows = session.execute(
        select(
            Task.target_key,
            func.count().filter(is_held),
            func.coalesce(func.sum(Task.rps_allocated).filter(is_held), 0.0),
            func.count().filter(Task.status == PENDING),
        )
        .where(Task.status.in_((PENDING, *HELD)), _key_in(session, keys))
        .group_by(Task.target_key)
    ).all()
    held = {str(key): _Held(int(n), float(rps or 0.0)) for key, n, rps, _ in rows if n}
    queued = {str(key) for key, _, _, waiting in rows if waiting}
    return held, queued


def _key_in(session: Session, keys: Collection[str]) -> ColumnElement[bool]:
    """``target_key`` among ``keys``: one array parameter on PostgreSQL, which it hashes
    and probes the (status, target_key) index with, instead of a list of 1,000 binds."""
    if session.get_bind().dialect.name == "postgresql":
        return Task.target_key == any_(cast(list(keys), ARRAY(String(253))))
    return Task.target_key.in_(keys)


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(Task.not_before.is_(None), Task.not_before <= now)


def has_waiting(session: Session, target_key: str) -> bool:
    """Whether the target has tasks waiting for a lease (due now or later)."""
    return (
        session.scalar(
            select(Task.id).where(Task.status == PENDING, Task.target_key == target_key).limit(1)
        )
        is not None
    )


def waiting_targets(session: Session, now: datetime, limit: int) -> list[str]:
    keys = session.scalars(
        select(Task.target_key)
        .where(Task.status == PENDING, _due(now), Task.target_key.is_not(None))
        .distinct()
        .limit(limit)
    )
    return [key for key in keys if key is not None]


def _plan_target(candidates: Sequence[Waiting], held: _Held) -> list[tuple[Waiting, float | None]]:
    """Which of a target's waiting tasks (in order) get a lease now, and their rate."""
    if not candidates:
        return []
    head = candidates[0]
    limit = head.max_concurrency or 1
    free = limit - held.count
    if free <= 0:
        return []
    if head.rps is None:
        return [(task, None) for task in candidates[:free]]
    # The target's rate is split between its leases: each gets at least an equal share
    # (rps / max_concurrency), and what is unallocated now is shared by those admitted now.
    available = head.rps - held.rps
    share = head.rps / limit
    fits = int((available + 1e-9) // share)
    count = min(free, fits, len(candidates))
    if count <= 0:
        return []
    granted: list[tuple[Waiting, float | None]] = []
    for i, task in enumerate(candidates[:count]):
        if (task.max_concurrency or 1) <= held.count + i:
            break
        granted.append((task, min(available / count, task.rps or available)))
    return granted


def admit(
    session: Session,
    now: datetime,
    *,
    admitted_ttl: timedelta,
    target_keys: Iterable[str] | None = None,
    limit: int = 1000,
) -> list[Grant]:
    """Give waiting tasks of the given targets (default: any) the leases their budgets allow.

    The caller holds the lease lock (:func:`leased_session`) and publishes the grants only
    after the transaction commits.
    """
    keys = sorted(set(target_keys)) if target_keys is not None else None
    if keys is None:
        keys = waiting_targets(session, now, limit)
    if not keys:
        return []
    held, _ = _held_and_queued(session, keys)
    rank = (
        func.row_number()
        .over(partition_by=Task.target_key, order_by=(Task.created_at, Task.id))
        .label("rank")
    )
    ranked = (
        select(Task.id, rank)
        .where(Task.status == PENDING, _due(now), _key_in(session, keys))
        .subquery()
    )
    tasks = [
        Waiting(**row._mapping)
        for row in session.execute(
            select(*WAITING_COLUMNS)
            .join(ranked, ranked.c.id == Task.id)
            .where(ranked.c.rank <= PER_TARGET_WINDOW)
            .order_by(Task.target_key, ranked.c.rank)
        )
    ]
    by_target: dict[str, list[Waiting]] = {}
    for task in tasks:
        by_target.setdefault(task.target_key or "", []).append(task)
    grants: list[Grant] = []
    for key, candidates in by_target.items():
        for task, rps in _plan_target(candidates, held.get(key, _Held())):
            grants.append(Grant(task, task.attempts + 1, rps))
    _grant(session, grants, now, now + admitted_ttl)
    return grants


def admit_new(
    session: Session, rows: list[dict[str, Any]], now: datetime, *, admitted_ttl: timedelta
) -> list[Grant]:
    """Admit new task rows before they are inserted (they are inserted admitted).

    What :func:`admit` would do right after inserting them, without updating them: a
    target that already has waiting tasks keeps its order (its new tasks wait behind
    them); the others get the leases their budgets allow now. The caller holds the lease
    lock and inserts ``rows`` in the same transaction.
    """
    keys = {row["target_key"] for row in rows}
    held, queued = _held_and_queued(session, keys)
    fields = {name for name in Waiting.__dataclass_fields__}
    by_target: dict[str, list[tuple[dict[str, Any], Waiting]]] = {}
    for row in rows:
        if row["target_key"] not in queued:
            view = Waiting(**{k: v for k, v in row.items() if k in fields})
            by_target.setdefault(row["target_key"], []).append((row, view))
    grants = []
    expires = now + admitted_ttl
    for key, entries in by_target.items():
        views = [view for _, view in entries]
        granted = dict((id(task), rps) for task, rps in _plan_target(views, held.get(key, _Held())))
        for row, view in entries:
            if id(view) not in granted:
                continue
            rps = granted[id(view)]
            row.update(
                status=TaskStatus.ADMITTED.value,
                attempts=1,
                admitted_at=now,
                lease_expires_at=expires,
                rps_allocated=rps,
            )
            grants.append(Grant(view, 1, rps))
    return grants


def _grant(session: Session, grants: list[Grant], now: datetime, expires: datetime) -> None:
    """Mark the granted tasks admitted: one statement on PostgreSQL, whatever their number."""
    if not grants:
        return
    values = {
        "status": TaskStatus.ADMITTED.value,
        "admitted_at": now,
        "lease_expires_at": expires,
        "not_before": None,
        "worker": None,
    }
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE tasks SET status = :status, attempts = tasks.attempts + 1, "
                "admitted_at = :admitted_at, lease_expires_at = :lease_expires_at, "
                "rps_allocated = grant_.rps, not_before = NULL, worker = NULL "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:rps AS float8[])) AS grant_(id, rps) "
                "WHERE tasks.id = grant_.id AND tasks.status = 'pending'"
            ),
            {
                **values,
                "ids": [g.task.id for g in grants],
                "rps": [g.rps for g in grants],
            },
        )
        return
    session.execute(
        update(Task),
        [
            {"id": g.task.id, "attempts": g.attempt, "rps_allocated": g.rps, **values}
            for g in grants
        ],
    )


def unadmit(session: Session, grants: Iterable[Grant]) -> None:
    """Take back leases whose messages could not be published."""
    for grant in grants:
        return_unstarted(session, grant.task.id, grant.attempt)


def return_unstarted(session: Session, task_id: uuid.UUID, attempt: int) -> bool:
    """An admitted task that never started goes back to waiting; it was no attempt."""
    result = session.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.status == TaskStatus.ADMITTED.value,
            Task.attempts == attempt,
        )
        .values(
            status=PENDING,
            attempts=attempt - 1,
            lease_expires_at=None,
            rps_allocated=None,
            admitted_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Claim:
    ok: bool
    #: Why a claim was refused: cancelled, finished, stale-attempt, held-elsewhere, unknown.
    reason: str = ""


def claim(
    session: Session,
    task_id: uuid.UUID,
    attempt: int,
    worker: str,
    now: datetime,
    lease_ttl: timedelta,
) -> Claim:
    """A worker takes its admitted task: ``running`` from now, lease renewed by heartbeats."""
    result = session.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.attempts == attempt,
            Task.status == TaskStatus.ADMITTED.value,
            Task.cancel_requested.is_(False),
        )
        .values(
            status=TaskStatus.RUNNING.value,
            started_at=now,
            finished_at=None,
            worker=worker,
            lease_expires_at=now + lease_ttl,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return Claim(True)
    task = session.get(Task, task_id)
    if task is None:
        return Claim(False, "unknown")
    if task.status == TaskStatus.CANCELLED.value or task.cancel_requested:
        return Claim(False, "cancelled")
    if TaskStatus(task.status).final:
        return Claim(False, "finished")
    if task.attempts != attempt:
        return Claim(False, "stale-attempt")
    return Claim(False, "held-elsewhere")


def renew(
    session: Session,
    leases: dict[uuid.UUID, int],
    worker: str,
    now: datetime,
    lease_ttl: timedelta,
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Heartbeat: extend this worker's leases; returns (cancel requested, lost) task ids."""
    if not leases:
        return set(), set()
    session.execute(
        update(Task)
        .where(
            Task.id.in_(list(leases)),
            Task.status == TaskStatus.RUNNING.value,
            Task.worker == worker,
        )
        .values(lease_expires_at=now + lease_ttl)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(Task.id, Task.status, Task.attempts, Task.worker, Task.cancel_requested).where(
            Task.id.in_(list(leases))
        )
    ).all()
    cancel = {row.id for row in rows if row.cancel_requested}
    lost = {
        row.id
        for row in rows
        if row.status != TaskStatus.RUNNING.value
        or row.attempts != leases[row.id]
        or row.worker != worker
    }
    return cancel, lost - cancel


@dataclass
class RetryPolicy:
    max_attempts: int
    backoff: Callable[[int], timedelta]


@dataclass
class Reaped:
    retried: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)
    scans: set[uuid.UUID] = field(default_factory=set)


def retry_or_fail(
    task: Task, reason: str, now: datetime, policy: RetryPolicy, *, failure: bool = True
) -> bool:
    """Hand ``task`` back for another attempt (True), or fail it when attempts are spent."""
    task.last_error = reason[:4000]
    task.lease_expires_at = None
    task.rps_allocated = None
    if failure and task.attempts >= policy.max_attempts:
        task.status = TaskStatus.FAILED.value
        task.reason = f"gave up after {task.attempts} attempts: {reason}"[:4000]
        task.finished_at = now
        return False
    task.status = PENDING
    task.not_before = now + policy.backoff(task.attempts) if failure else None
    return True


def cancel_task(task: Task, reason: str, now: datetime) -> None:
    task.status = TaskStatus.CANCELLED.value
    task.reason = reason[:4000]
    task.finished_at = now
    task.lease_expires_at = None
    task.rps_allocated = None


def reap(session: Session, now: datetime, policy: RetryPolicy) -> Reaped:
    """Reclaim expired leases (the caller holds the lease lock)."""
    reaped = Reaped()
    expired = session.scalars(
        select(Task)
        .where(Task.status.in_(HELD), Task.lease_expires_at < now)
        .order_by(Task.lease_expires_at)
        .limit(1000)
        # A task whose end event is being applied right now is skipped, not overwritten.
        .with_for_update(skip_locked=True)
    ).all()
    for task in expired:
        reaped.scans.add(task.scan_id)
        if task.cancel_requested:
            cancel_task(task, "cancelled (its worker was lost)", now)
            reaped.cancelled.append(task.id)
            continue
        if task.status == TaskStatus.RUNNING.value:
            reason = f"worker {task.worker} lost: lease expired"
        else:
            reason = "admitted but never started by a worker: lease expired"
        if retry_or_fail(task, reason, now, policy):
            reaped.retried.append(task.id)
        else:
            reaped.failed.append(task.id)
    session.flush()
    return reaped


def cancel_scan_tasks(
    session: Session, scan_id: uuid.UUID, reason: str, now: datetime
) -> tuple[int, int]:
    """Cancel what has not started; ask running tasks to stop. (cancelled, stopping)."""
    waiting = session.scalars(
        select(Task)
        .where(
            Task.scan_id == scan_id,
            Task.status.in_((PENDING, TaskStatus.ADMITTED.value)),
        )
        # Re-checked under the row lock: a task a worker claims meanwhile is asked to stop.
        .with_for_update()
    ).all()
    for task in waiting:
        cancel_task(task, reason, now)
    stopping = session.execute(
        update(Task)
        .where(Task.scan_id == scan_id, Task.status == TaskStatus.RUNNING.value)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return len(waiting), int(stopping.rowcount or 0)  # type: ignore[attr-defined]


def overdue_scans(session: Session, now: datetime) -> list[Scan]:
    return list(
        session.scalars(
            select(Scan).where(
                Scan.status == "running",
                Scan.deadline_at.is_not(None),
                Scan.deadline_at < now,
                Scan.cancel_requested_at.is_(None),
            )
        )
    )


def settled_scans(session: Session, limit: int = 100) -> list[uuid.UUID]:
    """Running scans none of whose tasks is still open: they should have ended."""
    open_task = (
        select(Task.id).where(Task.scan_id == Scan.id, Task.status.in_((PENDING, *HELD))).exists()
    )
    return list(
        session.scalars(
            select(Scan.id)
            .where(Scan.status == "running", Scan.origin == "scanfleet", ~open_task)
            .limit(limit)
        )
    )
