"""The fast decode path against the models: never more lenient, never a different record.

``ingest.decode.fast_record`` may decline any event (the models then decide), but when
it returns a record, the models must accept the same bytes and give an equal record.
Generated events are valid ones in many shapes and the same events corrupted in many
ways (wrong types, limits, unknown fields, odd spellings of UUIDs, times and numbers,
duplicate keys, broken JSON). Events in the common shape must take the fast path.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity
from contracts.errors import InvalidMessage
from contracts.events import FindingEvent
from contracts.finding import (
    REQUIRED_ASSET_FIELDS,
    REQUIRED_IDENTITY_KEYS,
    Asset,
    Evidence,
    Finding,
    ToolInfo,
)
from contracts.registry import EXAMPLE_DIR
from ingest import decode
from ingest.decode import fast_record, record_from_body
from ingest.record import IngestRecord, model_record_from_body

EXAMPLE: dict[str, Any] = json.loads((EXAMPLE_DIR / "finding-event.json").read_text("utf-8"))

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model_record(body: bytes) -> IngestRecord | None:
    try:
        return model_record_from_body(body)
    except InvalidMessage:
        return None


def assert_agrees(body: bytes) -> IngestRecord | None:
    """The fast path's answer for ``body`` is None or exactly the models' record."""
    fast = fast_record(body)
    if fast is None:
        return None
    reference = model_record(body)
    assert reference is not None, f"fast path accepted what the models refuse: {body[:300]!r}"
    assert fast == reference
    assert fast.observed_at.utcoffset() == reference.observed_at.utcoffset()
    for mine, theirs in zip(fast, reference, strict=True):
        # Equal values of one type; a time's tzinfo class may differ (pydantic has its own).
        assert type(mine) is type(theirs) or isinstance(mine, datetime)
    return fast


# -- generated events ------------------------------------------------------------------

LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
text = st.text(max_size=30)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
labels = st.builds("".join, st.tuples(st.sampled_from(LOWER), st.text(LOWER + DIGITS, max_size=8)))
hosts = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = (
    st.integers(0, 2**32 - 1)
    .map(lambda n: str(uuid.UUID(int=n)).replace("-", "")[-8:])
    .map(lambda h: ".".join(str(int(h[i : i + 2], 16)) for i in range(0, 8, 2)))
)
ipv6 = st.sampled_from(["::1", "2001:db8::1", "::ffff:127.0.0.1", "fe80::1:2", "2001:DB8:0::5"])


def uuid_text(value: uuid.UUID, spelling: str) -> str:
    if spelling == "upper":
        return str(value).upper()
    if spelling == "simple":
        return value.hex
    return str(value)


uuids = st.builds(uuid_text, st.uuids(), st.sampled_from(["canonical", "canonical", "upper"]))


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
    offset = draw(st.sampled_from([None, 0, 60, -300, 330, -720, 840, 59]))
    tz = UTC if offset is None else timezone(timedelta(minutes=offset))
    moment = moment.replace(tzinfo=tz)
    if not draw(st.booleans()):
        moment = moment.replace(microsecond=0)
    stamp = moment.isoformat()
    if offset is None and draw(st.booleans()):
        stamp = stamp.replace("+00:00", "Z")
    return stamp


@st.composite
def assets(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    asset: dict[str, Any] = {}
    which = draw(st.sampled_from(["host", "ip", "both"]))
    if which != "ip":
        spelling = draw(st.sampled_from(["{}", "{}", "{}.", " {} ", "{}\t"]))
        asset["host"] = spelling.format(
            draw(hosts.map(lambda h: h.upper() if len(h) % 3 == 0 else h))
        )
    if which != "host":
        asset["ip"] = draw(st.one_of(ipv4, ipv6))
    if kind in ("network.service", "tls") or draw(st.booleans()):
        asset["port"] = draw(st.integers(0, 65535))
        if draw(st.booleans()):
            asset["transport"] = draw(st.sampled_from(["tcp", "udp"]))
    if kind == "web.exposure" or draw(st.booleans()):
        scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
        port = draw(st.sampled_from(["", ":8080", ":443"]))
        path = draw(st.text(LOWER + "/._-", max_size=20))
        query = draw(st.sampled_from(["", "?a=1", "#frag"]))
        asset["url"] = f"{scheme}://{draw(hosts)}{port}/{path}{query}"
    return asset


@st.composite
def evidence_items(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"type": draw(st.sampled_from([e.value for e in EvidenceType]))}
    for key in ("label", "media_type"):
        if draw(st.booleans()):
            item[key] = draw(text)
    payload = draw(st.sampled_from(["content", "artifact_ref", "data", "several"]))
    if payload in ("content", "several"):
        item["content"] = draw(st.text(max_size=80))
    if payload in ("artifact_ref", "several"):
        item["artifact_ref"] = "sha256:" + draw(st.text("0123456789abcdef", max_size=64))
    if payload in ("data", "several"):
        item["data"] = draw(st.dictionaries(text, json_values, max_size=3))
    order = list(item)
    draw(st.randoms()).shuffle(order)
    return {k: item[k] for k in order}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([k.value for k in FindingKind]))
    identity = draw(
        st.dictionaries(
            text,
            st.one_of(st.text(max_size=40), st.integers(-(2**63), 2**63 - 1), st.booleans()),
            max_size=4,
        )
    )
    if kind == "dns.mail":
        identity.setdefault("domain", "example.test")
    if kind == "package.vuln":
        identity.setdefault("package", "openssl")
        identity.setdefault("vulnerability_id", "CVE-2024-0001")
    finding: dict[str, Any] = {
        "kind": kind,
        "rule_id": draw(st.text(min_size=1, max_size=40)),
        "title": draw(st.text(min_size=1, max_size=60)),
        "severity": draw(st.sampled_from([s.value for s in Severity])),
        "asset": draw(assets(kind)),
    }
    optional: dict[str, Any] = {
        "confidence": draw(st.sampled_from([c.value for c in Confidence])),
        "identity": identity,
        "attributes": draw(st.dictionaries(text, json_values, max_size=5)),
        "description": draw(st.none() | st.text(max_size=60)),
        "evidence": draw(st.lists(evidence_items(), max_size=3)),
        "remediation": draw(st.none() | st.text(max_size=60)),
        "references": draw(st.lists(st.text(max_size=40), max_size=3)),
        "cwe": draw(st.lists(st.integers(0, 99999).map("CWE-{}".format), max_size=3)),
        "cve": draw(
            st.lists(
                st.builds("CVE-{}-{:04d}".format, st.integers(1999, 2099), st.integers(0, 10**7)),
                max_size=3,
            )
        ),
        "cvss": draw(
            st.none() | st.floats(0.0, 10.0) | st.integers(0, 10) | st.sampled_from([0.0, 10.0])
        ),
    }
    for key, value in optional.items():
        if draw(st.integers(0, 4)) or (key == "identity" and identity):  # mostly present
            finding[key] = value
    event: dict[str, Any] = {
        "event_id": draw(uuids),
        "scan_id": draw(uuids),
        "tool": {"name": draw(st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,20}\Z"))},
        "observed_at": draw(timestamps()),
        "finding": finding,
    }
    if draw(st.booleans()):
        event["tool"]["version"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        event["schema"] = "scanfleet.finding-event/1"
    task = draw(st.sampled_from(["uuid", "null", "absent"]))
    if task == "uuid":
        event["task_id"] = draw(uuids)
    elif task == "null":
        event["task_id"] = None
    if draw(st.integers(0, 5)) == 0:
        event["fingerprint"] = draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    return event


# Values that break types, limits or spellings in ways the models may or may not accept.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.0,
    1.5,
    2**64,
    -(2**63) - 1,
    "",
    " ",
    "x" * 70000,
    "\n",
    "a\n",
    "\x00",
    "٣",
    "1",
    "80",
    "1e3",
    [],
    {},
    [1],
    {"a": 1},
    {"type": "text"},
    {"type": "text", "label": "no payload"},
    {"type": "text", "content": None, "data": None},
    "2026-11-21T09:30:00",
    "2026-11-21 09:30:00Z",
    "2026-11-21T09:30:00.1234567Z",
    "2026-02-30T00:00:00Z",
    "2026-11-21T24:00:00Z",
    "2026-11-21t09:30:00z",
    "1700000000",
    "6F1C2A4E8D3B4F7A9C512E0B7D9A4C11",
    "{6f1c2a4e-8d3b-4f7a-9c51-2e0b7d9a4c11}",
    "urn:uuid:6f1c2a4e-8d3b-4f7a-9c51-2e0b7d9a4c11",
    "6f1c2a4e-8d3b-4f7a-9c51-2e0b7d9a4c1",
    "6f1c2a4e_8d3b_4f7a_9c51_2e0b7d9a4c11",
    "127.0.0.01",
    "127.1",
    "0x7f.0.0.1",
    "::ffff:127.0.0.1",
    "-host",
    "host name",
    "HOST.",
    ".",
    "http://",
    "http://h:99999/",
    "nmap\n",
    "CWE-1\n",
    "CWE-\u0661",  # an Arabic-Indic digit
    "CVE-2024-123",
    "tcp",
    "TCP",
    "scanfleet.finding-event/2",
    "info",
    "INFO",
    float(10),
    10.000001,
    -0.0,
    65535,
    65536,
]

PATHS: list[tuple[str, ...]] = [
    ("schema",),
    ("event_id",),
    ("scan_id",),
    ("task_id",),
    ("tool",),
    ("tool", "name"),
    ("tool", "version"),
    ("observed_at",),
    ("fingerprint",),
    ("finding",),
    ("finding", "kind"),
    ("finding", "rule_id"),
    ("finding", "title"),
    ("finding", "severity"),
    ("finding", "confidence"),
    ("finding", "asset"),
    ("finding", "asset", "host"),
    ("finding", "asset", "ip"),
    ("finding", "asset", "transport"),
    ("finding", "asset", "port"),
    ("finding", "asset", "url"),
    ("finding", "identity"),
    ("finding", "identity", "domain"),
    ("finding", "attributes"),
    ("finding", "attributes", "k"),
    ("finding", "description"),
    ("finding", "evidence"),
    ("finding", "evidence", 0),
    ("finding", "evidence", 0, "type"),
    ("finding", "evidence", 0, "content"),
    ("finding", "evidence", 0, "data"),
    ("finding", "remediation"),
    ("finding", "references"),
    ("finding", "references", 0),
    ("finding", "cwe"),
    ("finding", "cwe", 0),
    ("finding", "cve", 0),
    ("finding", "cvss"),
    ("schema_",),
    ("unknown",),
    ("finding", "unknown"),
    ("finding", "asset", "unknown"),
    ("tool", "unknown"),
]


def set_path(data: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    for step in path[:-1]:
        if isinstance(step, int):
            if not isinstance(data, list) or not data:
                return
            data = data[0]
        elif isinstance(data, dict):
            data = data.setdefault(step, {})
        else:
            return
    last = path[-1]
    if isinstance(last, int):
        if isinstance(data, list):
            if delete:
                data.clear()
            else:
                data[:1] = [value]
        return
    if not isinstance(data, dict):
        return
    if delete:
        data.pop(last, None)
    else:
        data[last] = value


def test_each_odd_value_at_each_place_agrees() -> None:
    """Every odd value at every place (and every place removed), one at a time."""
    accepted = 0
    for path in PATHS:
        for value in [*ODD_VALUES, "absent"]:
            event = copy.deepcopy(EXAMPLE)
            event["finding"]["evidence"][0]["data"] = {"k": 1}
            event["finding"]["references"] = ["r"]
            event["finding"]["cwe"] = ["CWE-79"]
            event["finding"]["cve"] = ["CVE-2024-0001"]
            set_path(event, path, value, delete=value == "absent")
            body = json.dumps(event).encode()
            accepted += assert_agrees(body) is not None
    assert accepted > len(PATHS)  # the fast path did take many of them


def encode(event: Any, style: int) -> bytes:
    if style == 0:
        return json.dumps(event).encode()
    if style == 1:
        return json.dumps(event, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


@FUZZ
@given(events(), st.integers(0, 2))
def test_valid_events_take_the_fast_path_and_match_the_models(
    event: dict[str, Any], style: int
) -> None:
    body = encode(event, style)
    assert model_record(body) is not None, "the generator made an invalid event"
    # The common shape is what the fast path exists for: it must not decline it.
    assert assert_agrees(body) is not None


@FUZZ
@given(
    events(),
    st.lists(
        st.tuples(st.sampled_from(PATHS), st.sampled_from(ODD_VALUES) | json_values, st.booleans()),
        min_size=1,
        max_size=3,
    ),
    st.integers(0, 2),
)
def test_corrupted_events_are_never_accepted_differently(
    event: dict[str, Any], changes: list[tuple[tuple[str, ...], Any, bool]], style: int
) -> None:
    event = copy.deepcopy(event)
    for path, value, delete in changes:
        set_path(event, path, value, delete=delete)
    try:
        body = encode(event, style)
    except (TypeError, ValueError):
        return
    assert_agrees(body)


@FUZZ
@given(events(), st.randoms(use_true_random=False), st.integers(1, 4))
def test_byte_level_damage_is_never_accepted_differently(
    event: dict[str, Any], rng: random.Random, cuts: int
) -> None:
    body = bytearray(json.dumps(event).encode())
    for _ in range(cuts):
        at = rng.randrange(len(body))
        action = rng.randrange(4)
        if action == 0:
            del body[at]
        elif action == 1:
            body.insert(at, rng.choice(b'{}[]",:0123456789.eE-+ \\u\n\x00tfn'))
        elif action == 2:
            body[at] = rng.randrange(256)
        else:
            body[at:at] = body[max(0, at - 20) : at]
    assert_agrees(bytes(body))


def members(*pairs: tuple[str, Any]) -> bytes:
    """A JSON object with exactly these members, repeated names included."""
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


OTHER_ID = "0b9e4d6a-3c2f-4a18-8e7d-5f6a1b2c3d4e"


@pytest.mark.parametrize(
    ("repeat", "accepted"),
    [
        (("event_id", OTHER_ID), True),
        (("finding", {}), False),
        (("tool", {"name": "Not A Tool"}), False),
        (("tool", {"name": "other-tool"}), True),
    ],
)
@pytest.mark.parametrize("first", [True, False])
def test_repeated_names_agree(repeat: tuple[str, Any], accepted: bool, first: bool) -> None:
    """With a name given twice the last one counts; the fast path may leave it to the models
    (msgspec validates the first value as it reads it) but never takes it differently."""
    pairs = list(EXAMPLE.items())
    pairs = [repeat, *pairs] if first else [*pairs, repeat]
    body = members(*pairs)
    assert (model_record(body) is not None) is (first or accepted)
    record = assert_agrees(body)
    if record is not None and repeat[0] == "event_id":
        assert str(record.event_id) == (EXAMPLE["event_id"] if first else OTHER_ID)


# -- limits, one field at a time -------------------------------------------------------

LIMITS: list[tuple[tuple[Any, ...], int]] = [
    (("tool", "name"), 64),
    (("tool", "version"), 128),
    (("finding", "rule_id"), 256),
    (("finding", "title"), 512),
    (("finding", "asset", "host"), 253),
    (("finding", "description"), 16384),
    (("finding", "remediation"), 8192),
    (("finding", "references", 0), 2048),
    (("finding", "identity", "k"), 1024),
    (("finding", "evidence", 0, "label"), 256),
    (("finding", "evidence", 0, "content"), 65536),
    (("finding", "evidence", 0, "media_type"), 128),
    (("finding", "evidence", 0, "artifact_ref"), 1024),
]


@pytest.mark.parametrize(("path", "limit"), LIMITS)
@pytest.mark.parametrize("delta", [0, 1])
def test_length_limits_agree(path: tuple[Any, ...], limit: int, delta: int) -> None:
    event = copy.deepcopy(EXAMPLE)
    event["finding"]["references"] = ["r"]
    value = "a" * (limit + delta)
    set_path(event, path, value)
    body = json.dumps(event).encode()
    accepted = model_record(body) is not None
    assert accepted is (delta == 0)
    assert (fast_record(body) is not None) is accepted
    assert_agrees(body)


@pytest.mark.parametrize(
    ("path", "limit"),
    [(("finding", "evidence"), 64), (("finding", "references"), 64)],
)
@pytest.mark.parametrize("delta", [0, 1])
def test_list_limits_agree(path: tuple[str, ...], limit: int, delta: int) -> None:
    event = copy.deepcopy(EXAMPLE)
    item: Any = {"type": "text", "content": "x"} if path[-1] == "evidence" else "r"
    set_path(event, path, [item] * (limit + delta))
    body = json.dumps(event).encode()
    accepted = model_record(body) is not None
    assert accepted is (delta == 0)
    assert (fast_record(body) is not None) is accepted


@pytest.mark.parametrize("kind", [k.value for k in FindingKind])
def test_what_each_kind_requires_is_required_alike(kind: str) -> None:
    """Each identity key and asset field a kind needs, left out: both paths refuse it."""
    event = copy.deepcopy(EXAMPLE)
    finding = event["finding"]
    finding["kind"] = kind
    finding["asset"] = {"host": "a.example.test", "port": 443, "url": "https://a.example.test/"}
    finding["identity"] = {
        "domain": "example.test",
        "package": "openssl",
        "vulnerability_id": "CVE-2024-0001",
    }
    assert assert_agrees(json.dumps(event).encode()) is not None
    needed = [("identity", key) for key in REQUIRED_IDENTITY_KEYS[FindingKind(kind)]]
    needed += [("asset", name) for name in REQUIRED_ASSET_FIELDS[FindingKind(kind)]]
    for place, name in needed:
        lacking = copy.deepcopy(event)
        del lacking["finding"][place][name]
        body = json.dumps(lacking).encode()
        assert model_record(body) is None, (place, name)
        assert fast_record(body) is None, (place, name)


def test_the_example_event_takes_the_fast_path() -> None:
    body = (EXAMPLE_DIR / "finding-event.json").read_bytes()
    assert fast_record(body) == model_record_from_body(body)
    assert record_from_body(body) == model_record_from_body(body)


def test_a_refused_event_is_refused_with_the_models_reason() -> None:
    event = copy.deepcopy(EXAMPLE)
    event["finding"]["asset"]["port"] = 70000
    body = json.dumps(event).encode()
    assert fast_record(body) is None
    with pytest.raises(InvalidMessage) as info:
        record_from_body(body)
    assert "finding.asset.port" in info.value.reason


# -- the mirror stays a mirror ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mirror", "model"),
    [
        (decode._Event, FindingEvent),
        (decode._Tool, ToolInfo),
        (decode._Asset, Asset),
        (decode._Evidence, Evidence),
        (decode._Finding, Finding),
    ],
)
def test_every_model_field_is_mirrored(mirror: Any, model: Any) -> None:
    """A field added to a model must be added to the fast path (or it would be dropped)."""
    wire_names = {field.alias or name for name, field in model.model_fields.items()}
    assert set(mirror.__struct_fields__) == wire_names
