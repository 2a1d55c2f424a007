"""A worker's side of the leases: claim a task, keep its lease alive, hear cancellations.

One heartbeat thread per worker process renews the leases of every task the process
runs (``SCANFLEET_HEARTBEAT_S``) and, in the same round trip, learns which of them were
cancelled, or were given up on and admitted elsewhere; it stops those tools at once
(their process group is killed by the runner). A worker that dies stops heartbeating:
its leases expire and the coordinator's reaper retries its tasks.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from contracts.task import TaskMessage
from storage.database import session_scope
from storage.leases import Claim, claim, leased_session, renew, return_unstarted

log = structlog.get_logger("scanfleet.worker")


class TaskControl:
    """Stops one running task, remembering why: cancelled, handback (shutdown) or lost."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.why: str | None = None

    def stop(self, why: str) -> None:
        if not self.cancel.is_set():
            self.why = why
            self.cancel.set()


class LeaseKeeper:
    def __init__(
        self, database_url: str, worker: str, *, lease_ttl_s: float, heartbeat_s: float
    ) -> None:
        self._url = database_url
        self.worker = worker
        self._ttl = timedelta(seconds=lease_ttl_s)
        self._interval = min(heartbeat_s, lease_ttl_s / 3)
        self._held: dict[uuid.UUID, tuple[int, TaskControl]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, task: TaskMessage) -> Claim:
        with session_scope(self._url) as session:
            return claim(
                session, task.task_id, task.attempt, self.worker, datetime.now(UTC), self._ttl
            )

    def return_unstarted(self, task: TaskMessage) -> bool:
        """Give back an admitted task this worker will not start (it is shutting down)."""
        with leased_session(self._url) as session:
            return return_unstarted(session, task.task_id, task.attempt)

    def hold(self, task: TaskMessage) -> TaskControl:
        control = TaskControl()
        with self._lock:
            self._held[task.task_id] = (task.attempt, control)
        return control

    def drop(self, task_id: uuid.UUID) -> None:
        with self._lock:
            self._held.pop(task_id, None)

    def running(self) -> int:
        with self._lock:
            return len(self._held)

    def stop_all(self, why: str) -> None:
        with self._lock:
            controls = [control for _, control in self._held.values()]
        for control in controls:
            control.stop(why)

    def beat(self) -> None:
        """Renew every held lease once; stop tasks that were cancelled or lost."""
        with self._lock:
            leases = {task_id: attempt for task_id, (attempt, _) in self._held.items()}
        if not leases:
            return
        with session_scope(self._url) as session:
            cancel, lost = renew(session, leases, self.worker, datetime.now(UTC), self._ttl)
        with self._lock:
            held = dict(self._held)
        for task_id in cancel:
            if task_id in held:
                log.info("task_cancel_requested", task_id=str(task_id))
                held[task_id][1].stop("cancelled")
        for task_id in lost:
            if task_id in held:
                log.warning("task_lease_lost", task_id=str(task_id))
                held[task_id][1].stop("lost")

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except SQLAlchemyError as exc:
                # The database is away: leases run on until their expiry; try again.
                log.warning("heartbeat_failed", error=str(exc)[:300])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
