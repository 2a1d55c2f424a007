"""The embedded default: coordinator, workers and ingest in one process.

dramatiq's StubBroker carries the tasks, an in-process sink carries finding and task
events, and SQLite in the user's data directory stores everything. The domain code is
the fleet's: the same planning and dispatch, the same task execution, the same ingest
batch path (decode, validate, fingerprint, upsert) and the same lifecycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq

from contracts.events import FindingEvent
from contracts.task import TaskEvent, TaskMessage
from coordinator.dispatch import DispatchResult, dispatch
from coordinator.lifecycle import handle_task_event
from coordinator.scope import Scope
from coordinator.transport import POOLS, stub_broker, task_message
from ingest.batch import Delivery, process_batch
from ingest.sqlite import SqliteBatchWriter
from storage.artifacts import ArtifactStore
from workers.actors import register_actors
from workers.events import InProcessSink
from workers.execute import execute


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
        self.cancel = threading.Event()
        register_actors(self.broker, self._run_task, POOLS)
        self._worker: dramatiq.Worker | None = None

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
        handle_task_event(self.database_url, event)

    def _run_task(self, task: TaskMessage) -> None:
        execute(
            task, sink=self._sink, artifacts=self.artifacts, scope=self.scope, cancel=self.cancel
        )

    # -- running scans --------------------------------------------------------------------

    def start(self) -> None:
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, worker_timeout=100)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._writer.close()

    def submit(
        self,
        targets: Iterable[str],
        tools: list[str],
        *,
        time_limit_s: int = 300,
        target_list: list[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        on_dispatched: Callable[[DispatchResult], None] | None = None,
    ) -> DispatchResult:
        def publish(tasks: list[TaskMessage]) -> None:
            for task in tasks:
                self.broker.enqueue(task_message(task))

        result = dispatch(
            self.database_url,
            targets,
            tools,
            self.scope,
            publish,
            time_limit_s=time_limit_s,
            target_list=target_list,
            options=options,
        )
        if on_dispatched:
            on_dispatched(result)
        return result
