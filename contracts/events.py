"""The finding-event stream: one message per sighting of a finding."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from contracts.finding import MESSAGE_CONFIG, Finding, ToolInfo

FINDING_EVENT_SCHEMA: Literal["scanfleet.finding-event/1"] = "scanfleet.finding-event/1"


class FindingEvent(BaseModel):
    """A tool saw ``finding`` during ``task_id`` of ``scan_id``.

    ``event_id`` is the idempotency key: ingesting the same event twice changes
    nothing. Producers may send a ``fingerprint``; ingest recomputes it and never
    trusts the one sent.
    """

    model_config = MESSAGE_CONFIG

    schema_: Annotated[Literal["scanfleet.finding-event/1"], Field(alias="schema")] = (
        FINDING_EVENT_SCHEMA
    )
    event_id: UUID
    scan_id: UUID
    task_id: UUID | None = None
    tool: ToolInfo
    observed_at: AwareDatetime
    finding: Finding
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    def routing_key(self) -> str:
        return f"finding.{self.tool.name}"
