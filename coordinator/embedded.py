"""The embedded default: coordinator, workers and ingest in one process.

dramatiq's StubBroker carries the tasks, an in-process sink carries finding and task
events, and SQLite in the user's data directory stores everything. The domain code is
the fleet's: the same planning and dispatch, the same task execution, the same ingest
batch path (decode, validate, fingerprint, upsert) and the same lifecycle.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import structlog

from contracts.events import FindingEvent
from contracts.task import TaskEvent, TaskMessage
from coordinator.admission import admit_and_publish, tick
from coordinator.budgets import BudgetPolicy
from coordinator.dispatch import DispatchResult, dispatch
from coordinator.lifecycle import cancel_scan, handle_task_event, sweep
from coordinator.scope import Scope
from coordinator.settings import get_scan_settings
from coordinator.transport import queues, stub_broker, task_message
from ingest.batch import Delivery, process_batch
from ingest.sqlite import SqliteBatchWriter
from storage.artifacts import ArtifactStore
from workers.actors import register_actors
from workers.events import InProcessSink
from workers.execute import WORKER_ID
from workers.lease import LeaseKeeper
from workers.runner import TaskRunner

log = structlog.get_logger("scanfleet.embedded")


@dataclass
class EmbeddedFleet:
    database_url: str
    artifacts: ArtifactStore
    scope: Scope
    threads: int = 4

    def __post_init__(self) -> None:
        self._writer = SqliteBatchWriter(self.database_url)
        self._tag = 0
        self._tag_lock = threading.Lock()
        self.dead_letters: list[str] = []
        self.broker = stub_broker()
        self._sink = InProcessSink(self._ingest, self._task_event)
        settings = get_scan_settings()
        self.keeper = LeaseKeeper(
            self.database_url,
            WORKER_ID,
            lease_ttl_s=settings.lease_ttl_s,
            heartbeat_s=settings.heartbeat_s,
        )
        self.runner = TaskRunner(
            sink=self._sink, artifacts=self.artifacts, scope=self.scope, keeper=self.keeper
        )
        register_actors(self.broker, self.runner, queues())
        self._worker: dramatiq.Worker | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the in-process "services" ----------------------------------------------------

    def _ingest(self, events: Sequence[FindingEvent]) -> None:
        if not events:
            return
        with self._tag_lock:
            deliveries = []
            for event in events:
                self._tag += 1
                deliveries.append(
                    Delivery(self._tag, event.model_dump_json().encode(), event.routing_key(), None)
                )
        result = process_batch(self._writer, deliveries, generation=0, max_message_bytes=1 << 20)
        self.dead_letters.extend(d.reason for d in result.dead_letters)

    def _task_event(self, event: TaskEvent) -> None:
        applied = handle_task_event(self.database_url, event)
        if applied.freed_target is not None:
            admit_and_publish(self.database_url, self._enqueue, target_keys=[applied.freed_target])

    def _enqueue(self, tasks: Sequence[TaskMessage]) -> None:
        for task in tasks:
            self.broker.enqueue(task_message(task))

    def _tick(self) -> None:
        interval = get_scan_settings().tick_s
        while not self._stop.wait(interval):
            try:
                tick(self.database_url, self._enqueue)
                sweep(self.database_url)
            except Exception as exc:  # keep ticking; the next pass tries again
                log.warning("tick_failed", error=repr(exc)[:300])

    def cancel(self, scan_id: uuid.UUID, by: str = "embedded") -> None:
        cancel_scan(self.database_url, scan_id, by=by)

    # -- running scans --------------------------------------------------------------------

    def start(self) -> None:
        self.keeper.start()
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, worker_timeout=100)
        self._worker.start()
        self._ticker = threading.Thread(target=self._tick, name="embedded-tick", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self.runner.drain()
        self.runner.hand_back_running()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        self.keeper.close()
        self._writer.close()

    def submit(
        self,
        targets: Iterable[str],
        tools: list[str],
        *,
        budgets: BudgetPolicy | None = None,
        target_list: list[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        on_dispatched: Callable[[DispatchResult], None] | None = None,
    ) -> DispatchResult:
        result = dispatch(
            self.database_url,
            targets,
            tools,
            self.scope,
            self._enqueue,
            budgets=budgets,
            target_list=target_list,
            options=options,
        )
        if on_dispatched:
            on_dispatched(result)
        return result
