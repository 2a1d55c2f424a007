"""Running one task: the framework around a tool plugin.

Check the target again (parse, scope after DNS resolution), probe the tool, run it with
a hard time limit, keep its raw output as an artifact, parse it, publish every finding,
then report how the task ended. The task message is acked by dramatiq only after this
returns, so a worker lost midway loses nothing: the task runs again and its events,
whose ids derive from the task and the fingerprint, are recognised as duplicates.

A transient failure (the artifact store or the broker unreachable) or a worker shutting
down hands the task back (a ``released`` event) instead of ending it: the coordinator
retries it. A tool's own failure and a scope refusal end it, and are never retried.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from contracts.errors import ScanfleetError, TransientError
from contracts.events import FindingEvent
from contracts.finding import ToolInfo
from contracts.fingerprint import fingerprint
from contracts.task import TaskEvent, TaskEventType, TaskMessage, TaskStatus
from coordinator.scope import Scope
from coordinator.targets import TargetRefused, parse_target
from storage.artifacts import ArtifactStore
from workers.events import EventSink
from workers.lease import TaskControl
from workers.runners.subprocess import run
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.registry import get_tool, tool_version

log = structlog.get_logger("scanfleet.worker")

WORKER_ID = f"{socket.gethostname()}/{uuid.uuid4().hex[:8]}"


def config_hash(tool: str, version: str, options: dict[str, Any], argv: list[str] | None) -> str:
    material = {"tool": tool, "version": version, "options": options, "argv": argv}
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Outcome(Exception):
    def __init__(self, status: TaskStatus, reason: str, exit_code: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.exit_code = exit_code


class _Release(Exception):
    """Hand the task back unfinished; ``failure`` retries it with backoff."""

    def __init__(self, reason: str, *, failure: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


class _Abandon(Exception):
    """The task is no longer this worker's (admitted again elsewhere): report nothing."""


def _stopped(control: TaskControl) -> Exception:
    if control.why == "handback":
        return _Release("handed back: its worker is shutting down", failure=False)
    if control.why == "lost":
        return _Abandon()
    return _Outcome(TaskStatus.CANCELLED, "cancelled")


def _collect_with_limit(tool: Any, ctx: RunContext, control: TaskControl) -> bytes:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["raw"] = tool.collect(ctx)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"collect-{tool.name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + ctx.time_limit_s
    while thread.is_alive() and not control.cancel.is_set() and time.monotonic() < deadline:
        thread.join(min(0.2, max(deadline - time.monotonic(), 0)))
    if thread.is_alive():
        # Built-in checks watch ctx.cancel (the control's event) and stop promptly.
        stopped_by_control = control.cancel.is_set()
        control.cancel.set()
        thread.join(5)
        if stopped_by_control:
            raise _stopped(control)
        raise _Outcome(TaskStatus.TIMED_OUT, f"timed out after {ctx.time_limit_s:g}s")
    if "error" in result:
        error = result["error"]
        if isinstance(error, ScanfleetError):
            raise _Outcome(TaskStatus.FAILED, str(error)) from error
        raise _Outcome(TaskStatus.FAILED, f"{tool.name} crashed: {error!r}") from error
    return bytes(result["raw"])


def execute(
    task: TaskMessage,
    *,
    sink: EventSink,
    artifacts: ArtifactStore,
    scope: Scope,
    control: TaskControl | None = None,
) -> TaskEvent | None:
    """Run ``task``; return the finished or released event it published (None: abandoned)."""
    with structlog.contextvars.bound_contextvars(
        scan_id=str(task.scan_id),
        task_id=str(task.task_id),
        target=task.target,
        tool=task.tool,
        attempt=task.attempt,
    ):
        return _execute(
            task, sink=sink, artifacts=artifacts, scope=scope, control=control or TaskControl()
        )


def _execute(
    task: TaskMessage,
    *,
    sink: EventSink,
    artifacts: ArtifactStore,
    scope: Scope,
    control: TaskControl,
) -> TaskEvent | None:
    def event(kind: TaskEventType, **fields: Any) -> TaskEvent:
        return TaskEvent(
            task_id=task.task_id,
            scan_id=task.scan_id,
            type=kind,
            at=datetime.now(UTC),
            worker=WORKER_ID,
            attempt=task.attempt,
            **fields,
        )

    sink.task_event(event(TaskEventType.STARTED))
    argv: list[str] | None = None
    version = "unknown"
    artifact_ref: str | None = None
    published = 0
    try:
        # A task carries one target: never expand a (hostile) CIDR past its second address.
        targets = list(itertools.islice(parse_target(task.target), 2))
        if len(targets) != 1:
            raise _Outcome(TaskStatus.FAILED, "a task carries exactly one target")
        parsed = targets[0]
        checked = scope.check(parsed)
        # Connect to the address that was checked, not to a fresh lookup of the name.
        pinned_ip = parsed.ip or (checked[0] if checked else None)
        tool = get_tool(task.tool)
        version = tool_version(task.tool)
        ctx = RunContext(
            target=Target(host=parsed.host, ip=pinned_ip, port=parsed.port, url=parsed.url),
            time_limit_s=float(task.time_limit_s),
            rps=task.rps,
            options=dict(task.options),
            cancel=control.cancel,
        )
        invocation = tool.invocation(ctx)
        if invocation is not None:
            argv = list(invocation.argv)
            log.info("tool_started", argv=argv)
            result = run(argv, timeout_s=task.time_limit_s, cancel=control.cancel)
            raw = result.stdout
            media_type = invocation.media_type
            if result.cancelled:
                raise _stopped(control)
            if result.timed_out:
                raise _Outcome(
                    TaskStatus.TIMED_OUT, f"killed at its time limit of {task.time_limit_s}s"
                )
            if result.exit_code not in invocation.ok_exit_codes:
                tail = result.stderr.decode(errors="replace").strip()[-500:]
                raise _Outcome(
                    TaskStatus.FAILED,
                    f"{tool.name} exited with {result.exit_code}: {tail or 'no error output'}",
                    result.exit_code,
                )
        else:
            raw = _collect_with_limit(tool, ctx, control)
            media_type = "application/json"
        try:
            stored = artifacts.put(raw, media_type=media_type)
        except OSError as exc:
            raise _Release(f"artifact store unavailable: {exc}", failure=True) from exc
        artifact_ref = stored.ref
        try:
            findings = tool.parse(raw, ctx)
        except ToolError as exc:
            raise _Outcome(TaskStatus.FAILED, f"unparsable {tool.name} output: {exc}") from exc
        tool_info = ToolInfo(name=tool.name, version=version)
        observed = datetime.now(UTC)
        events = [
            FindingEvent(
                event_id=uuid.uuid5(task.task_id, fingerprint(finding)),
                scan_id=task.scan_id,
                task_id=task.task_id,
                tool=tool_info,
                observed_at=observed,
                finding=finding,
            )
            for finding in findings
        ]
        try:
            sink.findings(events)
        except TransientError as exc:
            raise _Release(f"publishing findings failed: {exc}", failure=True) from exc
        published = len(events)
        finished = event(
            TaskEventType.FINISHED,
            status=TaskStatus.SUCCEEDED,
            exit_code=0,
            findings_count=published,
        )
    except _Abandon:
        log.warning("task_abandoned", reason="its lease was lost; it runs again elsewhere")
        return None
    except _Release as release:
        released = event(
            TaskEventType.RELEASED, reason=release.reason, transient_failure=release.failure
        )
        sink.task_event(released)
        log.warning("task_released", reason=release.reason, failure=release.failure)
        return released
    except _Outcome as outcome:
        finished = event(
            TaskEventType.FINISHED,
            status=outcome.status,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            findings_count=published,
        )
    except TargetRefused as exc:
        finished = event(
            TaskEventType.FINISHED, status=TaskStatus.FAILED, reason=str(exc), findings_count=0
        )
    except ScanfleetError as exc:
        finished = event(
            TaskEventType.FINISHED,
            status=TaskStatus.FAILED,
            reason=str(exc),
            findings_count=published,
        )
    finished = finished.model_copy(
        update={
            "tool": ToolInfo(name=task.tool, version=version),
            "config_hash": config_hash(task.tool, version, dict(task.options), argv),
            "artifact_ref": artifact_ref,
            "argv": argv,
        }
    )
    sink.task_event(finished)
    log.info(
        "task_finished",
        status=finished.status.value if finished.status else None,
        findings=published,
        reason=finished.reason,
    )
    return finished
