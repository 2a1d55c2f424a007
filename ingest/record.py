"""From message bytes to a row ready for the database: decode, validate, fingerprint.

This is the domain half of ingest and does not know which database it writes to.
The fingerprint is always computed here; one sent by the producer is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import orjson
from pydantic import TypeAdapter, ValidationError

from contracts.errors import InvalidMessage
from contracts.events import FindingEvent
from contracts.finding import Evidence
from contracts.fingerprint import asset_identity, attribute_hash, fingerprint

_EVIDENCE = TypeAdapter(list[Evidence])
_MAX_ERRORS_IN_REASON = 3


@dataclass(frozen=True, slots=True)
class IngestRecord:
    """One validated finding event, flattened into the columns ingest writes."""

    event_id: UUID
    scan_id: UUID
    task_id: UUID | None
    tool_name: str
    tool_version: str
    observed_at: datetime
    fingerprint: str
    kind: str
    rule_id: str
    asset_key: str
    host: str | None
    ip: str | None
    transport: str | None
    port: int | None
    url: str | None
    identity: str
    title: str
    severity: str
    confidence: str
    attributes: str
    attr_hash: str
    description: str | None
    remediation: str | None
    references: str
    cwe: str
    cve: str
    cvss: float | None
    evidence: str

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in RECORD_COLUMNS)


RECORD_COLUMNS: tuple[str, ...] = tuple(IngestRecord.__dataclass_fields__)


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:_MAX_ERRORS_IN_REASON]:
        location = ".".join(str(p) for p in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - _MAX_ERRORS_IN_REASON
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def decode_event(body: bytes) -> FindingEvent:
    """Parse and validate one message body, or raise :class:`InvalidMessage`."""
    try:
        return FindingEvent.model_validate_json(body)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors(include_url=False)}
        kind = "bad_json" if "json_invalid" in kinds else "validation"
        raise InvalidMessage(describe_validation_error(exc), kind=kind) from exc


def to_record(event: FindingEvent) -> IngestRecord:
    finding = event.finding
    asset = finding.asset
    url_identity = asset_identity(asset).get("url") if asset.url is not None else None
    return IngestRecord(
        event_id=event.event_id,
        scan_id=event.scan_id,
        task_id=event.task_id,
        tool_name=event.tool.name,
        tool_version=event.tool.version,
        observed_at=event.observed_at,
        fingerprint=fingerprint(finding),
        kind=finding.kind.value,
        rule_id=finding.rule_id,
        asset_key=asset.address,
        host=asset.host,
        ip=asset.ip,
        transport=asset.transport.value if asset.transport is not None else None,
        port=asset.port,
        url=url_identity,
        identity=_json(finding.identity),
        title=finding.title,
        severity=finding.severity.value,
        confidence=finding.confidence.value,
        attributes=_json(finding.attributes),
        attr_hash=attribute_hash(finding),
        description=finding.description,
        remediation=finding.remediation,
        references=_json(finding.references),
        cwe=_json(finding.cwe),
        cve=_json(finding.cve),
        cvss=finding.cvss,
        evidence=_EVIDENCE.dump_json(list(finding.evidence), exclude_none=True).decode(),
    )


def record_from_body(body: bytes) -> IngestRecord:
    """Decode, validate and flatten; raises :class:`InvalidMessage` for a bad message."""
    return to_record(decode_event(body))
