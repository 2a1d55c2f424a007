"""From message bytes to an ingest row: decode, validate, fingerprint, flatten."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.errors import InvalidMessage, PermanentError
from contracts.events import FindingEvent
from contracts.fingerprint import attribute_hash, fingerprint
from contracts.registry import EXAMPLE_DIR
from ingest.decode import record_from_body
from ingest.record import RECORD_COLUMNS, IngestRecord, model_record_from_body

EXAMPLE_BYTES = (EXAMPLE_DIR / "finding-event.json").read_bytes()
EXAMPLE_EVENT: dict[str, Any] = json.loads(EXAMPLE_BYTES)


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def event_data() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_EVENT)


def invalid(raw: bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        record_from_body(raw)
    return info.value


# -- fingerprint -----------------------------------------------------------------------


def test_record_fingerprint_is_computed_by_ingest_from_the_finding() -> None:
    event = FindingEvent.model_validate_json(EXAMPLE_BYTES)
    assert "fingerprint" not in EXAMPLE_EVENT
    assert record_from_body(EXAMPLE_BYTES).fingerprint == fingerprint(event.finding)


@pytest.mark.parametrize("sent", ["0" * 64, "f" * 64])
def test_record_ignores_a_wrong_fingerprint_sent_by_the_producer(sent: str) -> None:
    data = event_data()
    data["fingerprint"] = sent
    record = record_from_body(body(data))
    assert record.fingerprint != sent
    assert record.fingerprint == record_from_body(EXAMPLE_BYTES).fingerprint


def test_record_attribute_hash_is_the_contract_attribute_hash() -> None:
    event = FindingEvent.model_validate_json(EXAMPLE_BYTES)
    assert record_from_body(EXAMPLE_BYTES).attr_hash == attribute_hash(event.finding)


# -- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b'{"schema": ', b"\xff\xfe", EXAMPLE_BYTES[:-5]]
)
def test_body_that_is_not_json_is_refused_as_bad_json(raw: bytes) -> None:
    error = invalid(raw)
    assert error.kind == "bad_json"
    assert isinstance(error, PermanentError)
    assert error.reason


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("finding", "severity"), "urgent", "finding.severity"),
        (("finding", "asset", "port"), 70000, "finding.asset.port"),
        (("tool", "name"), "Nmap Scanner", "tool.name"),
        (("event_id",), "not-a-uuid", "event_id"),
    ],
)
def test_schema_violation_is_refused_as_validation_naming_the_field_path(
    path: tuple[str, ...], value: Any, named: str
) -> None:
    data = event_data()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error = invalid(body(data))
    assert error.kind == "validation"
    assert error.reason.startswith(f"{named}: ")


@pytest.mark.parametrize("raw", [b"[]", b"null", b"42", b'"text"'])
def test_json_that_is_not_an_object_is_refused_as_validation(raw: bytes) -> None:
    assert invalid(raw).kind == "validation"


def test_validation_reason_lists_at_most_three_errors_and_counts_the_rest() -> None:
    error = invalid(b"{}")  # five required fields are missing
    assert error.reason.count("Field required") == 3
    assert error.reason.endswith("(+2 more)")


@pytest.mark.parametrize("where", ["identity", "attributes", "evidence"])
def test_integer_beyond_64_bits_is_refused_as_invalid_not_an_unexpected_error(
    where: str,
) -> None:
    data = event_data()
    huge = 2**64
    if where == "evidence":
        data["finding"]["evidence"][0]["data"] = {"n": huge}
    else:
        data["finding"][where] = {"n": huge}
    with pytest.raises(InvalidMessage, match="64-bit") as error:
        record_from_body(body(data))
    assert error.value.kind == "validation"


# -- flattened columns -----------------------------------------------------------------


def test_evidence_column_leaves_out_unset_fields_and_keeps_enum_values_as_strings() -> None:
    record = record_from_body(EXAMPLE_BYTES)
    assert json.loads(record.evidence) == [
        {
            "type": "banner",
            "label": "service banner",
            "content": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
        }
    ]


def test_evidence_column_keeps_structured_data_and_artifact_references() -> None:
    data = event_data()
    data["finding"]["evidence"] = [
        {"type": "http_response", "data": {"status": 200, "headers": {"server": "x"}}},
        {"type": "artifact", "artifact_ref": "file://artifacts/a.xml", "media_type": "text/xml"},
    ]
    record = record_from_body(body(data))
    assert json.loads(record.evidence) == [
        {"type": "http_response", "data": {"status": 200, "headers": {"server": "x"}}},
        {"type": "artifact", "artifact_ref": "file://artifacts/a.xml", "media_type": "text/xml"},
    ]


def test_empty_lists_become_empty_json_arrays() -> None:
    data = event_data()
    data["finding"]["evidence"] = []
    record = record_from_body(body(data))
    assert (record.evidence, record.references, record.cwe, record.cve) == ("[]",) * 4


def test_record_columns_carry_the_event_as_plain_values() -> None:
    record = record_from_body(EXAMPLE_BYTES)
    assert str(record.event_id) == EXAMPLE_EVENT["event_id"]
    assert (record.tool_name, record.tool_version) == ("nmap", "7.93")
    assert (record.kind, record.rule_id, record.severity, record.confidence) == (
        "network.service",
        "open-port",
        "info",
        "high",
    )
    assert type(record.severity) is str
    assert type(record.kind) is str
    assert (record.asset_key, record.host, record.ip, record.transport, record.port) == (
        "127.0.0.1",
        None,
        "127.0.0.1",
        "tcp",
        22,
    )
    assert json.loads(record.attributes) == EXAMPLE_EVENT["finding"]["attributes"]
    assert json.loads(record.identity) == {}
    assert record.observed_at.utcoffset() is not None


def test_every_record_field_holds_its_own_value() -> None:
    """An event whose every field differs from the others, read back field by field."""
    data = event_data()
    data.update(
        event_id="11111111-1111-4111-8111-111111111111",
        scan_id="22222222-2222-4222-8222-222222222222",
        task_id="33333333-3333-4333-8333-333333333333",
        tool={"name": "tool-name", "version": "tool-version"},
        observed_at="2026-11-21T09:30:00+01:00",
    )
    finding = {
        "kind": "web.exposure",
        "rule_id": "rule-id",
        "title": "the title",
        "severity": "high",
        "confidence": "low",
        "asset": {
            "host": "host.example.test",
            "transport": "udp",
            "port": 8443,
            "url": "https://host.example.test:8443/p",
        },
        "identity": {"id": "identity"},
        "attributes": {"a": "attributes"},
        "description": "the description",
        "remediation": "the remediation",
        "references": ["https://example.test/ref"],
        "cwe": ["CWE-200"],
        "cve": ["CVE-2026-0001"],
        "cvss": 7.5,
        "evidence": [{"type": "text", "content": "evidence"}],
    }
    data["finding"] = finding
    for record in (record_from_body(body(data)), model_record_from_body(body(data))):
        model = FindingEvent.model_validate(data).finding
        assert record._asdict() == {
            "event_id": uuid.UUID(data["event_id"]),
            "scan_id": uuid.UUID(data["scan_id"]),
            "task_id": uuid.UUID(data["task_id"]),
            "tool_name": "tool-name",
            "tool_version": "tool-version",
            "observed_at": datetime(2026, 11, 21, 8, 30, tzinfo=UTC),
            "fingerprint": fingerprint(model),
            "kind": "web.exposure",
            "rule_id": "rule-id",
            "asset_key": "host.example.test",
            "host": "host.example.test",
            "ip": None,
            "transport": "udp",
            "port": 8443,
            "url": "https://host.example.test:8443/p",
            "identity": '{"id":"identity"}',
            "title": "the title",
            "severity": "high",
            "confidence": "low",
            "attributes": '{"a":"attributes"}',
            "attr_hash": attribute_hash(model),
            "description": "the description",
            "remediation": "the remediation",
            "references": '["https://example.test/ref"]',
            "cwe": '["CWE-200"]',
            "cve": '["CVE-2026-0001"]',
            "cvss": 7.5,
            "evidence": '[{"type":"text","content":"evidence"}]',
        }
        assert record.fingerprint != record.attr_hash


def test_record_url_is_the_normalised_url_without_query_or_fragment() -> None:
    data = event_data()
    data["finding"].update(
        kind="web.exposure",
        asset={"host": "app.example.test", "url": "HTTP://App.Example.test/admin?x=1#top"},
    )
    record = record_from_body(body(data))
    assert record.url == "http://app.example.test:80/admin"
    assert record.asset_key == "app.example.test"


def test_record_columns_are_the_ingest_record_fields_in_order() -> None:
    assert IngestRecord._fields == RECORD_COLUMNS
    assert RECORD_COLUMNS[0] == "event_id"
    assert len(RECORD_COLUMNS) == len(set(RECORD_COLUMNS))
