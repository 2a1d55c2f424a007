"""From message bytes to a row ready for the database: decode, validate, fingerprint.

This is the domain half of ingest and does not know which database it writes to.
The fingerprint is always computed here; one sent by the producer is ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson
from pydantic import ValidationError

from contracts.enums import Confidence, FindingKind, Severity
from contracts.errors import InvalidMessage
from contracts.events import FindingEvent
from contracts.fingerprint import (
    ENUM_VALUES,
    asset_identity_of,
    attribute_material_of,
    digest,
    fingerprint_material_of,
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


def decode_event(body: bytes) -> FindingEvent:
    """Parse and validate one message body, or raise :class:`InvalidMessage`."""
    try:
        return FindingEvent.model_validate_json(body)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors(include_url=False)}
        kind = "bad_json" if "json_invalid" in kinds else "validation"
        raise InvalidMessage(describe_validation_error(exc), kind=kind) from exc


class _ToolFields(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...


class EventFields(Protocol):
    """What :func:`flatten` reads of an event as it stands (a model or a fast-path struct)."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def scan_id(self) -> UUID: ...
    @property
    def task_id(self) -> UUID | None: ...
    @property
    def tool(self) -> _ToolFields: ...


class FindingFields(Protocol):
    """What :func:`flatten` reads of a finding as it stands."""

    @property
    def kind(self) -> FindingKind: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def identity(self) -> dict[str, Any]: ...
    @property
    def title(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def confidence(self) -> Confidence: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def description(self) -> str | None: ...
    @property
    def remediation(self) -> str | None: ...
    @property
    def references(self) -> list[str]: ...
    @property
    def cwe(self) -> list[str]: ...
    @property
    def cve(self) -> list[str]: ...
    @property
    def cvss(self) -> float | None: ...


def flatten(
    event: EventFields,
    finding: FindingFields,
    observed_at: datetime,
    host: str | None,
    ip: str | None,
    transport: str | None,
    port: int | None,
    url: str | None,
    evidence: str,
) -> IngestRecord:
    """The record of a validated event: both hashes and the JSON columns.

    Both decode paths end here (:func:`to_record` from the models, the fast path of
    :mod:`ingest.decode` from its own structures, which carry the same field names), so
    they flatten alike by construction. Each passes what it holds in another form: the
    time, the normalised asset fields and the evidence as JSON text (:func:`evidence_json`).
    """
    address = host if host is not None else str(ip)
    asset_identity = asset_identity_of(address, transport, port, url)
    kind = ENUM_VALUES[finding.kind]
    rule_id = finding.rule_id
    identity = finding.identity
    title = finding.title
    severity = ENUM_VALUES[finding.severity]
    confidence = ENUM_VALUES[finding.confidence]
    attributes = finding.attributes
    cwe = finding.cwe
    cve = finding.cve
    cvss = finding.cvss
    tool = event.tool
    # Positional, in field order (a keyword call costs a microsecond more per event;
    # tests/unit/test_ingest_record.py checks every field of a record by name).
    return IngestRecord(
        event.event_id,
        event.scan_id,
        event.task_id,
        tool.name,
        tool.version,
        observed_at,
        digest(fingerprint_material_of(kind, rule_id, asset_identity, identity)),  # fingerprint
        kind,
        rule_id,
        address,  # asset_key
        host,
        ip,
        transport,
        port,
        asset_identity.get("url"),
        json_text(identity),
        title,
        severity,
        confidence,
        json_text(attributes),
        digest(attribute_material_of(title, severity, confidence, attributes, cve, cwe, cvss)),
        finding.description,
        finding.remediation,
        json_list(finding.references),
        json_list(cwe),
        json_list(cve),
        cvss,
        evidence,
    )


def to_record(event: FindingEvent) -> IngestRecord:
    finding = event.finding
    asset = finding.asset
    return flatten(
        event,
        finding,
        observed_at=event.observed_at,
        host=asset.host,
        ip=asset.ip,
        transport=ENUM_VALUES[asset.transport] if asset.transport is not None else None,
        port=asset.port,
        url=asset.url,
        evidence=evidence_json(
            [{k: v for k, v in item.__dict__.items() if v is not None} for item in finding.evidence]
        ),
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
