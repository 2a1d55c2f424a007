"""From message bytes to a row ready for the database: decode, validate, fingerprint.

This is the domain half of ingest and does not know which database it writes to.
The fingerprint is always computed here; one sent by the producer is ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from pydantic import ValidationError

from contracts.errors import InvalidMessage
from contracts.events import FindingEvent
from contracts.finding import Evidence
from contracts.fingerprint import (
    ENUM_VALUES,
    attribute_hash,
    digest,
    fingerprint_material,
)

_MAX_ERRORS_IN_REASON = 3


class IngestRecord(NamedTuple):
    """One validated finding event, flattened into the columns ingest writes (in order)."""

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


RECORD_COLUMNS: tuple[str, ...] = IngestRecord._fields


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:_MAX_ERRORS_IN_REASON]:
        location = ".".join(str(p) for p in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - _MAX_ERRORS_IN_REASON
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def json_list(values: list[str]) -> str:
    return orjson.dumps(values).decode() if values else "[]"


def evidence_json(evidence: list[dict[str, Any]]) -> str:
    """The evidence list as JSON (items with their set fields only, in the model's order)."""
    return orjson.dumps(evidence).decode() if evidence else "[]"


def _evidence_items(evidence: list[Evidence]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.__dict__.items() if v is not None} for item in evidence]


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
    material = fingerprint_material(finding)
    return IngestRecord(
        event_id=event.event_id,
        scan_id=event.scan_id,
        task_id=event.task_id,
        tool_name=event.tool.name,
        tool_version=event.tool.version,
        observed_at=event.observed_at,
        fingerprint=digest(material),
        kind=ENUM_VALUES[finding.kind],
        rule_id=finding.rule_id,
        asset_key=asset.address,
        host=asset.host,
        ip=asset.ip,
        transport=ENUM_VALUES[asset.transport] if asset.transport is not None else None,
        port=asset.port,
        url=material["asset"].get("url"),
        identity=json_text(finding.identity),
        title=finding.title,
        severity=ENUM_VALUES[finding.severity],
        confidence=ENUM_VALUES[finding.confidence],
        attributes=json_text(finding.attributes),
        attr_hash=attribute_hash(finding),
        description=finding.description,
        remediation=finding.remediation,
        references=json_list(finding.references),
        cwe=json_list(finding.cwe),
        cve=json_list(finding.cve),
        cvss=finding.cvss,
        evidence=evidence_json(_evidence_items(finding.evidence)),
    )


def model_record_from_body(body: bytes) -> IngestRecord:
    """Decode, validate and flatten through the models; raises :class:`InvalidMessage`.

    The reference for :func:`ingest.decode.record_from_body`, which takes a faster path
    for events in the common shape and comes here for every other.
    """
    event = decode_event(body)
    try:
        return to_record(event)
    except (TypeError, ValueError) as exc:  # e.g. orjson: "Integer exceeds 64-bit range"
        raise InvalidMessage(f"cannot be stored: {exc}", kind="validation") from exc
