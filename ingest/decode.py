"""Message bytes to a record: the common shape of an event fast, any other through the models.

Validating a finding event through its pydantic models (:mod:`contracts.events`) and then
reading the models back was over half of ingest's CPU per event. Almost every event
arrives in one plain shape: hyphenated UUIDs, an ISO 8601 time with an offset, numbers
where numbers belong, no field of a name the contract does not know. For that shape,
:func:`fast_record` decodes into compiled msgspec structures whose constraints mirror the
models' field by field, applies the models' own normalisation functions (host, IP, URL,
the requirements of each kind) and computes the record through the same functions of
:mod:`contracts` (fingerprint, attribute hash). For anything else it returns ``None``
and the models decide: they stay the one authority on what is valid, and they word
every refusal.

What keeps this safe: the fast path may decline anything, but it must never accept an
event the models refuse, nor produce a record that differs from theirs.
``tests/unit/test_ingest_decode.py`` checks both on generated events, valid and
corrupted, against :func:`ingest.record.model_record_from_body`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from contracts.enums import FindingKind
from contracts.finding import (
    checked_url,
    kind_requirements_unmet,
    normalise_host,
    normalise_ip,
)
from contracts.fingerprint import asset_identity_of, attribute_material_of, digest
from ingest.record import (
    IngestRecord,
    evidence_json,
    json_list,
    json_text,
    model_record_from_body,
)

# The vocabularies of contracts.enums, spelled out because msgspec needs literal types;
# tests/unit/test_ingest_decode.py checks that they are the enums' values.
KindName = Literal[
    "network.service", "web.exposure", "web.template", "tls", "dns.mail", "package.vuln"
]
SeverityName = Literal["info", "low", "medium", "high", "critical"]
ConfidenceName = Literal["low", "medium", "high"]
TransportName = Literal["tcp", "udp"]
EvidenceTypeName = Literal[
    "text", "http_response", "http_request", "certificate", "banner", "dns_record", "artifact"
]

#: ISO 8601 with an offset, as producers write it (calendar checks: ``fromisoformat``).
#: The models take more spellings; those go the slow way.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])"
)

# Patterns are anchored with \A...\Z: the models' (Rust) `$` matches only at the very end,
# Python's also before a final newline.


class _Tool(Struct, forbid_unknown_fields=True, gc=False):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\A[a-z0-9][a-z0-9._-]*\Z")]
    version: Annotated[str, Meta(max_length=128)] = "unknown"


class _Asset(Struct, forbid_unknown_fields=True, gc=False):
    host: Annotated[str, Meta(max_length=253)] | None = None
    ip: str | None = None
    transport: TransportName | None = None
    port: Annotated[int, Meta(ge=0, le=65535)] | None = None
    url: Annotated[str, Meta(max_length=4096)] | None = None


class _Evidence(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    # Field order is the models' order: the stored JSON lists set fields in it.
    type: EvidenceTypeName
    label: Annotated[str, Meta(max_length=256)] | None = None
    content: Annotated[str, Meta(max_length=65536)] | None = None
    media_type: Annotated[str, Meta(max_length=128)] | None = None
    artifact_ref: Annotated[str, Meta(max_length=1024)] | None = None
    data: dict[str, Any] | None = None


class _Finding(Struct, forbid_unknown_fields=True, gc=False):
    kind: KindName
    rule_id: Annotated[str, Meta(min_length=1, max_length=256)]
    title: Annotated[str, Meta(min_length=1, max_length=512)]
    severity: SeverityName
    asset: _Asset
    confidence: ConfidenceName = "medium"
    identity: dict[str, Annotated[str, Meta(max_length=1024)] | int | bool] = {}
    attributes: dict[str, Any] = {}
    description: Annotated[str, Meta(max_length=16384)] | None = None
    evidence: Annotated[list[_Evidence], Meta(max_length=64)] = []
    remediation: Annotated[str, Meta(max_length=8192)] | None = None
    references: Annotated[list[Annotated[str, Meta(max_length=2048)]], Meta(max_length=64)] = []
    cwe: list[Annotated[str, Meta(pattern=r"\ACWE-[0-9]+\Z")]] = []
    cve: list[Annotated[str, Meta(pattern=r"\ACVE-[0-9]{4}-[0-9]{4,}\Z")]] = []
    cvss: Annotated[float, Meta(ge=0.0, le=10.0)] | None = None


class _Event(Struct, forbid_unknown_fields=True, gc=False):
    event_id: UUID
    scan_id: UUID
    tool: _Tool
    observed_at: str
    finding: _Finding
    schema: Literal["scanfleet.finding-event/1"] = "scanfleet.finding-event/1"
    task_id: UUID | None = None
    fingerprint: Annotated[str, Meta(pattern=r"\A[0-9a-f]{64}\Z")] | None = None


_decoder = msgspec.json.Decoder(_Event)
_KINDS = {kind.value: kind for kind in FindingKind}


def _record(event: _Event) -> IngestRecord | None:
    stamp = event.observed_at
    if not _TIMESTAMP.fullmatch(stamp):
        return None
    finding = event.finding
    asset = finding.asset
    host = asset.host
    if host is not None:
        host = normalise_host(host)
    ip = asset.ip
    if ip is not None:
        ip = normalise_ip(ip)
    address = host if host is not None else ip
    if address is None:
        return None
    port = asset.port
    transport = asset.transport
    if transport is None and port is not None:
        transport = "tcp"
    url = asset.url
    if url is not None:
        url = checked_url(url)
    for item in finding.evidence:
        if item.content is None and item.artifact_ref is None and item.data is None:
            return None
    identity = finding.identity
    if kind_requirements_unmet(_KINDS[finding.kind], identity, {"port": port, "url": url}):
        return None
    asset_identity = asset_identity_of(address, transport, port, url)
    material = {
        "kind": finding.kind,
        "rule_id": finding.rule_id,
        "asset": asset_identity,
        "identity": identity,
    }
    title = finding.title
    severity = finding.severity
    confidence = finding.confidence
    attributes = finding.attributes
    cve = finding.cve
    cwe = finding.cwe
    cvss = finding.cvss
    evidence = finding.evidence
    return IngestRecord(
        event_id=event.event_id,
        scan_id=event.scan_id,
        task_id=event.task_id,
        tool_name=event.tool.name,
        tool_version=event.tool.version,
        observed_at=datetime.fromisoformat(stamp),
        fingerprint=digest(material),
        kind=finding.kind,
        rule_id=finding.rule_id,
        asset_key=address,
        host=host,
        ip=ip,
        transport=transport,
        port=port,
        url=asset_identity.get("url"),
        identity=json_text(identity),
        title=title,
        severity=severity,
        confidence=confidence,
        attributes=json_text(attributes),
        attr_hash=digest(
            attribute_material_of(title, severity, confidence, attributes, cve, cwe, cvss)
        ),
        description=finding.description,
        remediation=finding.remediation,
        references=json_list(finding.references),
        cwe=json_list(cwe),
        cve=json_list(cve),
        cvss=cvss,
        evidence=evidence_json(msgspec.to_builtins(evidence)),
    )


def fast_record(body: bytes) -> IngestRecord | None:
    """The record of an event in the common shape, or ``None``: let the models decide."""
    try:
        return _record(_decoder.decode(body))
    except (msgspec.DecodeError, ValueError, TypeError):
        # DecodeError includes msgspec.ValidationError; ValueError: the normalisations;
        # TypeError: e.g. orjson and an integer over 64 bits, which the models refuse.
        return None


def record_from_body(body: bytes) -> IngestRecord:
    """Decode, validate and flatten; raises :class:`InvalidMessage` for a bad message."""
    record = fast_record(body)
    if record is not None:
        return record
    return model_record_from_body(body)
