"""The message contracts: committed schemas and examples, validation rules, enums."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts.enums import Severity
from contracts.events import FindingEvent
from contracts.finding import REQUIRED_ASSET_FIELDS, REQUIRED_IDENTITY_KEYS, Asset
from contracts.registry import EXAMPLE_DIR, MESSAGES, SCHEMA_DIR, render_schema
from contracts.task import TaskStatus

EXAMPLE_EVENT: dict[str, Any] = json.loads(
    (EXAMPLE_DIR / "finding-event.json").read_text(encoding="utf-8")
)

MESSAGE_PARAMS = [pytest.param(stem, model, id=stem) for stem, model in MESSAGES.items()]


def event_data(**finding_changes: Any) -> dict[str, Any]:
    """A deep copy of the example finding event, with top-level finding fields replaced."""
    data = copy.deepcopy(EXAMPLE_EVENT)
    data["finding"].update(finding_changes)
    return data


def refusal(data: dict[str, Any]) -> str:
    """The validation error text for ``data``; fails the test if it validates."""
    with pytest.raises(ValidationError) as info:
        FindingEvent.model_validate(data)
    return str(info.value)


def asset(**fields: Any) -> Asset:
    return Asset.model_validate(fields)


# -- committed files -------------------------------------------------------------------


@pytest.mark.parametrize(("stem", "model"), MESSAGE_PARAMS)
def test_committed_schema_equals_the_schema_rendered_from_the_model(
    stem: str, model: type[BaseModel]
) -> None:
    path = SCHEMA_DIR / f"{stem}.json"
    assert path.read_text(encoding="utf-8") == render_schema(model), (
        f"{path} is out of date with {model.__name__}; run `python -m contracts.registry`"
    )


@pytest.mark.parametrize(("stem", "model"), MESSAGE_PARAMS)
def test_example_validates_against_its_model_and_round_trips(
    stem: str, model: type[BaseModel]
) -> None:
    raw = (EXAMPLE_DIR / f"{stem}.json").read_bytes()
    message = model.model_validate_json(raw)
    dumped = message.model_dump(mode="json")
    assert dumped["schema"] == json.loads(raw)["schema"]
    assert "schema_" not in dumped
    assert model.model_validate_json(message.model_dump_json()) == message


def test_every_message_has_a_schema_and_an_example_and_no_file_lacks_a_model() -> None:
    assert {p.stem for p in SCHEMA_DIR.glob("*.json")} == set(MESSAGES)
    assert {p.stem for p in EXAMPLE_DIR.glob("*.json")} == set(MESSAGES)
    assert not [p for p in SCHEMA_DIR.iterdir() if p.suffix != ".json"]
    assert not [p for p in EXAMPLE_DIR.iterdir() if p.suffix != ".json"]


def test_finding_event_example_asset_has_an_address_and_a_port() -> None:
    event = FindingEvent.model_validate(EXAMPLE_EVENT)
    assert event.finding.asset.host is not None or event.finding.asset.ip is not None
    assert event.finding.asset.port is not None


# -- finding requirements per kind -----------------------------------------------------


def test_package_vuln_without_its_identity_keys_is_refused_naming_them() -> None:
    message = refusal(event_data(kind="package.vuln", identity={}))
    assert "package.vuln" in message
    assert "'package'" in message
    assert "'vulnerability_id'" in message


@pytest.mark.parametrize(
    ("kind", "missing"),
    [(kind, key) for kind, needed in REQUIRED_IDENTITY_KEYS.items() for key in needed],
    ids=str,
)
def test_finding_missing_one_required_identity_key_is_refused_naming_only_that_key(
    kind: Any, missing: str
) -> None:
    present = {k: "x" for k in REQUIRED_IDENTITY_KEYS[kind] if k != missing}
    full_asset = {"ip": "127.0.0.1", "port": 443, "url": "https://127.0.0.1/"}
    message = refusal(event_data(kind=kind.value, identity=present, asset=full_asset))
    assert f"needs identity keys ['{missing}']" in message


@pytest.mark.parametrize(
    ("kind", "missing"),
    [(kind, field) for kind, needed in REQUIRED_ASSET_FIELDS.items() for field in needed],
    ids=str,
)
def test_finding_missing_a_required_asset_field_is_refused_naming_it(
    kind: Any, missing: str
) -> None:
    full_asset = {"ip": "127.0.0.1", "port": 443, "url": "https://127.0.0.1/"}
    del full_asset[missing]
    identity = dict.fromkeys(REQUIRED_IDENTITY_KEYS[kind], "x")
    message = refusal(event_data(kind=kind.value, identity=identity, asset=full_asset))
    assert f"needs asset fields ['{missing}']" in message


def test_network_service_without_port_is_refused() -> None:
    message = refusal(event_data(asset={"ip": "127.0.0.1", "transport": "tcp"}))
    assert "port" in message


# -- asset rules -----------------------------------------------------------------------


def test_asset_with_neither_host_nor_ip_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs a host or an ip"):
        asset(port=22)


@pytest.mark.parametrize(
    "host",
    ["-oX", "-iL /etc/passwd", " --script=x", "exa mple.test", "a\tb", "a\nb", "", " ", "."],
)
def test_host_starting_with_dash_containing_whitespace_or_empty_is_refused(host: str) -> None:
    with pytest.raises(ValidationError):
        asset(host=host)


def test_host_is_stripped_lower_cased_and_loses_its_trailing_dot() -> None:
    assert asset(host=" App.Example.TEST. ").host == "app.example.test"


def test_host_with_an_inner_dash_is_accepted() -> None:
    assert asset(host="my-host.example.test").host == "my-host.example.test"


@pytest.mark.parametrize(
    "ip", ["010.1.1.1", "127.0.0.01", "1.1", "2130706433", "0x7f.0.0.1", "256.1.1.1", "localhost"]
)
def test_ip_that_is_not_a_strict_address_is_refused(ip: str) -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        asset(ip=ip)


def test_ip_given_as_a_json_number_is_refused() -> None:
    with pytest.raises(ValidationError):
        Asset.model_validate_json('{"ip": 2130706433}')


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("::FFFF:127.0.0.1", "127.0.0.1"),  # IPv4-mapped is the IPv4 address
        ("0:0:0:0:0:ffff:7f00:1", "127.0.0.1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("FE80::1", "fe80::1"),
        (" 127.0.0.1 ", "127.0.0.1"),
    ],
)
def test_ip_is_normalised_to_its_canonical_text(given: str, expected: str) -> None:
    assert asset(ip=given).ip == expected


def test_port_without_transport_defaults_to_tcp() -> None:
    assert asset(ip="127.0.0.1", port=53).transport == "tcp"


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_outside_0_to_65535_is_refused(port: int) -> None:
    with pytest.raises(ValidationError):
        asset(ip="127.0.0.1", port=port)


# -- envelope rules --------------------------------------------------------------------


@pytest.mark.parametrize("observed_at", ["2026-11-21T09:30:00", "2026-11-21 09:30:00"])
def test_naive_observed_at_is_refused(observed_at: str) -> None:
    data = event_data()
    data["observed_at"] = observed_at
    assert "observed_at" in refusal(data)


def test_observed_at_with_an_offset_is_accepted() -> None:
    data = event_data()
    data["observed_at"] = "2026-11-21T10:30:00+01:00"
    assert FindingEvent.model_validate(data).observed_at.utcoffset() is not None


@pytest.mark.parametrize(("stem", "model"), MESSAGE_PARAMS)
@pytest.mark.parametrize("wrong", ["scanfleet.finding-event/2", "scanfleet.other/1", "", None])
def test_message_with_a_wrong_schema_string_is_refused(
    stem: str, model: type[BaseModel], wrong: str | None
) -> None:
    data = json.loads((EXAMPLE_DIR / f"{stem}.json").read_text(encoding="utf-8"))
    data["schema"] = wrong
    with pytest.raises(ValidationError, match="schema"):
        model.model_validate(data)


def test_unknown_fields_are_ignored_at_every_level_for_forward_compatibility() -> None:
    data = event_data()
    data["added_in_a_later_minor"] = {"x": 1}
    data["tool"]["build"] = "abc"
    data["finding"]["exploitability"] = "high"
    data["finding"]["asset"]["vlan"] = 12
    data["finding"]["evidence"][0]["sha256"] = "0" * 64
    event = FindingEvent.model_validate(data)
    assert event == FindingEvent.model_validate(EXAMPLE_EVENT)
    dumped = json.dumps(event.model_dump(mode="json"))
    for unknown in ("added_in_a_later_minor", "build", "exploitability", "vlan", "sha256"):
        assert unknown not in dumped


def test_serialisation_writes_schema_under_its_wire_name_and_round_trips() -> None:
    event = FindingEvent.model_validate(EXAMPLE_EVENT)
    wire = json.loads(event.model_dump_json())
    assert wire["schema"] == "scanfleet.finding-event/1"
    assert "schema_" not in wire
    assert FindingEvent.model_validate_json(event.model_dump_json()) == event
    assert event.model_dump()["schema"] == "scanfleet.finding-event/1"


def test_message_built_with_field_name_schema__still_serialises_as_schema() -> None:
    """Code may build a message with ``schema_=`` (populate_by_name); it still serialises
    as ``schema``."""
    data = copy.deepcopy(EXAMPLE_EVENT)
    data["schema_"] = data.pop("schema")
    event = FindingEvent.model_validate(data)
    assert json.loads(event.model_dump_json())["schema"] == "scanfleet.finding-event/1"


# -- enums -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(TaskStatus), ids=str)
def test_task_status_is_final_exactly_for_succeeded_failed_timed_out_cancelled(
    status: TaskStatus,
) -> None:
    assert status.final is (status.value in {"succeeded", "failed", "timed_out", "cancelled"})


def test_severity_rank_orders_info_low_medium_high_critical() -> None:
    expected = ["info", "low", "medium", "high", "critical"]
    ranks = [Severity(name).rank for name in expected]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)
    assert [s.value for s in sorted(Severity, key=lambda s: s.rank)] == expected


@pytest.mark.parametrize("stem", sorted(MESSAGES))
def test_every_example_validates_against_its_exported_json_schema(stem: str) -> None:
    """What another service sees: the committed JSON Schema accepts the committed example."""
    import jsonschema

    schema = json.loads((SCHEMA_DIR / f"{stem}.json").read_text())
    example = json.loads((EXAMPLE_DIR / f"{stem}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(example)
