"""Task-level messages: one tool run against one target, and what became of it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, Field

from contracts.finding import MESSAGE_CONFIG, ToolInfo
from contracts.scan import Name

TASK_MESSAGE_SCHEMA: Literal["scanfleet.task/1"] = "scanfleet.task/1"
TASK_EVENT_SCHEMA: Literal["scanfleet.task-event/1"] = "scanfleet.task-event/1"

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class TaskMessage(BaseModel):
    """Run ``tool`` against ``target`` within the given budget."""

    model_config = MESSAGE_CONFIG

    schema_: Annotated[Literal["scanfleet.task/1"], Field(alias="schema")] = TASK_MESSAGE_SCHEMA
    task_id: UUID
    scan_id: UUID
    target: Annotated[str, Field(min_length=1, max_length=2048)]
    tool: Name
    pool: Name = "default"
    budget_class: Name = "standard"
    options: dict[str, Any] = Field(default_factory=dict)
    attempt: Annotated[int, Field(ge=1)] = 1
    time_limit_s: Annotated[int, Field(ge=1, le=86400)] = 600
    rps: Annotated[float, Field(gt=0)] | None = None
    config_hash: Hash | None = None


class TaskEventType(StrEnum):
    STARTED = "started"
    HEARTBEAT = "heartbeat"
    FINISHED = "finished"
    #: The worker hands the task back unfinished (a transient failure, or it is shutting
    #: down); the coordinator retries it, with backoff for a failure.
    RELEASED = "released"


class TaskStatus(StrEnum):
    PENDING = "pending"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}
)


class TaskEvent(BaseModel):
    """A worker reports on a task: it started, it is alive, or it finished (how)."""

    model_config = MESSAGE_CONFIG

    schema_: Annotated[Literal["scanfleet.task-event/1"], Field(alias="schema")] = TASK_EVENT_SCHEMA
    event_id: UUID = Field(default_factory=uuid4)
    task_id: UUID
    scan_id: UUID
    type: TaskEventType
    at: AwareDatetime
    worker: Annotated[str, Field(max_length=256)] | None = None
    attempt: Annotated[int, Field(ge=1)] = 1
    status: TaskStatus | None = None
    #: ``released`` only: whether the release is a failure (retried with backoff).
    transient_failure: bool | None = None
    exit_code: int | None = None
    reason: Annotated[str, Field(max_length=4096)] | None = None
    findings_count: Annotated[int, Field(ge=0)] | None = None
    tool: ToolInfo | None = None
    config_hash: Hash | None = None
    artifact_ref: Annotated[str, Field(max_length=1024)] | None = None
    argv: list[str] | None = None
