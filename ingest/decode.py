"""Message bytes to a record: the common shape of an event fast, any other through the models.

Validating a finding event through its pydantic models (:mod:`contracts.events`) and then
reading the models back was over half of ingest's CPU per event. Almost every event
arrives in one plain shape: hyphenated UUIDs, an ISO 8601 time with an offset, numbers
where numbers belong, no field of a name the contract does not know. For that shape,
:func:`fast_record` decodes into compiled msgspec structures whose constraints mirror the
models' field by field (with the contract's own enums), applies the models' own
normalisation functions (host, IP, URL, the requirements of each kind) and flattens
through the same :func:`ingest.record.flatten` as the models' path (fingerprint,
attribute hash, JSON columns). For anything else it returns ``None``
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

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.finding import (
    REQUIRED_ASSET_FIELDS,
    REQUIRED_IDENTITY_KEYS,
    checked_url,
    normalise_host,
    normalise_ip,
)
from contracts.fingerprint import ENUM_VALUES
from ingest.record import IngestRecord, evidence_json, flatten, model_record_from_body

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
    transport: Transport | None = None
    port: Annotated[int, Meta(ge=0, le=65535)] | None = None
    url: Annotated[str, Meta(max_length=4096)] | None = None


class _Evidence(Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    # Field order is the models' order: the stored JSON lists set fields in it.
    type: EvidenceType
    label: Annotated[str, Meta(max_length=256)] | None = None
    content: Annotated[str, Meta(max_length=65536)] | None = None
    media_type: Annotated[str, Meta(max_length=128)] | None = None
    artifact_ref: Annotated[str, Meta(max_length=1024)] | None = None
    data: dict[str, Any] | None = None


class _Finding(Struct, forbid_unknown_fields=True, gc=False):
    kind: FindingKind
    rule_id: Annotated[str, Meta(min_length=1, max_length=256)]
    title: Annotated[str, Meta(min_length=1, max_length=512)]
    severity: Severity
    asset: _Asset
    confidence: Confidence = Confidence.MEDIUM
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
_TCP = ENUM_VALUES[Transport.TCP]

#: Per kind, what :func:`contracts.finding.kind_requirements_unmet` asks for: identity keys,
#: a port, a URL (the only asset fields a kind requires), looked up once per event.
_REQUIREMENTS: dict[FindingKind, tuple[tuple[str, ...], bool, bool]] = {
    kind: (
        REQUIRED_IDENTITY_KEYS[kind],
        "port" in REQUIRED_ASSET_FIELDS[kind],
        "url" in REQUIRED_ASSET_FIELDS[kind],
    )
    for kind in FindingKind
}
if not {f for fields in REQUIRED_ASSET_FIELDS.values() for f in fields} <= {"port", "url"}:
    raise RuntimeError("a kind requires an asset field the fast path does not check")


def _record(event: _Event) -> IngestRecord | None:
    """The checks of the models' validators, then the record (:func:`flatten`)."""
    stamp = event.observed_at
    if not _TIMESTAMP.fullmatch(stamp):
        return None
    finding = event.finding
    asset = finding.asset
    host = None if asset.host is None else normalise_host(asset.host)
    ip = None if asset.ip is None else normalise_ip(asset.ip)
    if host is None and ip is None:
        return None
    port = asset.port
    transport = ENUM_VALUES[asset.transport] if asset.transport is not None else None
    if transport is None and port is not None:
        transport = _TCP
    url = None if asset.url is None else checked_url(asset.url)
    evidence = finding.evidence
    free_form = False
    for item in evidence:
        if item.data is not None:
            free_form = True
        elif item.content is None and item.artifact_ref is None:
            return None
    identity_keys, needs_port, needs_url = _REQUIREMENTS[finding.kind]
    if (needs_port and port is None) or (needs_url and url is None):
        return None
    for key in identity_keys:
        if key not in finding.identity:
            return None
    return flatten(
        event,
        finding,
        observed_at=datetime.fromisoformat(stamp),
        host=host,
        ip=ip,
        transport=transport,
        port=port,
        url=url,
        evidence=_evidence_json(evidence, free_form),
    )


_encode = msgspec.json.Encoder().encode


def _evidence_json(evidence: list[_Evidence], free_form: bool) -> str:
    """The evidence column: items with their set fields, in the models' field order.

    Strings only (no ``data``): msgspec writes the very bytes orjson writes, straight from
    the structures. Free-form ``data`` goes through orjson, as on the models' path, which
    refuses what they refuse (an integer over 64 bits, say)."""
    if not evidence:
        return "[]"
    if free_form:
        return evidence_json(msgspec.to_builtins(evidence))
    return _encode(evidence).decode()


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
