"""Scan-level messages: asking for a scan, and the scan's lifecycle events."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, Field

from contracts.finding import MESSAGE_CONFIG

SCAN_REQUEST_SCHEMA: Literal["scanfleet.scan-request/1"] = "scanfleet.scan-request/1"
SCAN_EVENT_SCHEMA: Literal["scanfleet.scan-event/1"] = "scanfleet.scan-event/1"

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class BudgetOverride(BaseModel):
    """Per-scan overrides of the target budgets; unset fields keep the profile's."""

    model_config = MESSAGE_CONFIG

    max_concurrency: Annotated[int, Field(ge=1, le=1024)] | None = None
    rps: Annotated[float, Field(gt=0, le=100000)] | None = None
    max_runtime_s: Annotated[int, Field(ge=1, le=86400)] | None = None
    max_scan_wall_s: Annotated[int, Field(ge=1, le=7 * 86400)] | None = None


class ScanRequest(BaseModel):
    """Another service (or the CLI) asks for a scan of ``targets``."""

    model_config = MESSAGE_CONFIG

    schema_: Annotated[Literal["scanfleet.scan-request/1"], Field(alias="schema")] = (
        SCAN_REQUEST_SCHEMA
    )
    request_id: UUID = Field(default_factory=uuid4)
    targets: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=2048)]],
        Field(min_length=1, max_length=1_000_000),
    ]
    tools: list[Name] | None = None
    scope: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = None
    profile: Name = "default"
    budget: BudgetOverride | None = None
    requested_by: Annotated[str, Field(max_length=256)] | None = None
    labels: dict[str, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)


class ScanEventType(StrEnum):
    CREATED = "created"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ScanEvent(BaseModel):
    """A scan changed state; ``finished`` carries whether it was complete or partial."""

    model_config = MESSAGE_CONFIG

    schema_: Annotated[Literal["scanfleet.scan-event/1"], Field(alias="schema")] = SCAN_EVENT_SCHEMA
    event_id: UUID = Field(default_factory=uuid4)
    scan_id: UUID
    type: ScanEventType
    at: AwareDatetime
    request_id: UUID | None = None
    complete: bool | None = None
    tasks_total: Annotated[int, Field(ge=0)] | None = None
    tasks_failed: Annotated[int, Field(ge=0)] | None = None
    findings_total: Annotated[int, Field(ge=0)] | None = None
    reason: Annotated[str, Field(max_length=4096)] | None = None
