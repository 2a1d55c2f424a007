"""The worker's task runner: claim the task's lease, run it, keep the lease, hand back.

What each dramatiq actor calls with a :class:`TaskMessage`. The message is acked when
this returns, which is after the task's end (or its hand-back) was published:

* a task whose claim fails is not run: it was cancelled, it already ended, it belongs
  to a later attempt, or another worker still holds it (a redelivered message);
* while the worker drains (SIGTERM) a task it has not started goes back to waiting at
  once (it was no attempt) and the coordinator admits it again, to another worker;
* when the end event cannot be published the lease simply expires and the coordinator
  retries the task; its findings' event ids repeat, so nothing is doubled.
"""

from __future__ import annotations

import threading

import structlog

from contracts.errors import TransientError
from contracts.task import TaskMessage
from coordinator.scope import Scope
from storage.artifacts import ArtifactStore
from workers.events import EventSink
from workers.execute import execute
from workers.lease import LeaseKeeper

log = structlog.get_logger("scanfleet.worker")


class TaskRunner:
    def __init__(
        self, *, sink: EventSink, artifacts: ArtifactStore, scope: Scope, keeper: LeaseKeeper
    ) -> None:
        self.sink = sink
        self.artifacts = artifacts
        self.scope = scope
        self.keeper = keeper
        self.draining = threading.Event()

    def __call__(self, task: TaskMessage) -> None:
        try:
            self._run(task)
        except TransientError as exc:
            log.warning(
                "task_report_failed",
                task_id=str(task.task_id),
                error=str(exc)[:300],
                outcome="its lease expires and the coordinator retries it",
            )

    def _run(self, task: TaskMessage) -> None:
        if self.draining.is_set():
            returned = self.keeper.return_unstarted(task)
            log.info("task_returned_unstarted", task_id=str(task.task_id), returned=returned)
            return
        claim = self.keeper.claim(task)
        if not claim.ok:
            log.info(
                "task_not_run", task_id=str(task.task_id), attempt=task.attempt, why=claim.reason
            )
            return
        control = self.keeper.hold(task)
        try:
            if self.draining.is_set():
                control.stop("handback")
            execute(
                task, sink=self.sink, artifacts=self.artifacts, scope=self.scope, control=control
            )
        finally:
            self.keeper.drop(task.task_id)

    def drain(self) -> None:
        """Stop taking tasks: the ones not started yet are handed back when they arrive."""
        self.draining.set()

    def hand_back_running(self) -> None:
        """Stop the running tools; their tasks are handed back (released), not failed."""
        self.keeper.stop_all("handback")
