"""Properties of the finding fingerprint and the attribute hash (DESIGN.md, "Findings").

The fingerprint names "the same thing on the same asset" across scans: it must not move
when volatile fields change, and it must separate different assets, rules and identities.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from contracts.events import FindingEvent
from contracts.finding import Finding
from contracts.fingerprint import attribute_hash, canonical_json, fingerprint
from contracts.registry import EXAMPLE_DIR
from ingest.record import to_record

EXAMPLE_EVENT: dict[str, Any] = json.loads(
    (EXAMPLE_DIR / "finding-event.json").read_text(encoding="utf-8")
)

PROPERTY = settings(max_examples=200, deadline=None)

# -- strategies ------------------------------------------------------------------------

LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
labels = st.builds("".join, st.tuples(st.sampled_from(LOWER), st.text(LOWER + DIGITS, max_size=9)))
hosts = st.lists(labels, min_size=1, max_size=4).map(".".join)
loopback_ips = st.integers(min_value=0, max_value=2**24 - 1).map(
    lambda n: str(ipaddress.IPv4Address((127 << 24) | n))
)
ports = st.integers(min_value=1, max_value=65535)
transports = st.sampled_from(list(Transport))
rule_ids = st.builds(
    "".join,
    st.tuples(st.sampled_from(LOWER + DIGITS), st.text(LOWER + DIGITS + "._-", max_size=40)),
)
keys = st.text(LOWER + DIGITS + "_", min_size=1, max_size=16)
# Integers stay within 64 bits: larger ones crash the hashing (see test_ingest_record.py).
identity_values = st.one_of(
    st.text(max_size=40), st.integers(min_value=-(2**63), max_value=2**63 - 1)
)
identities = st.dictionaries(keys, identity_values, max_size=6)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
attribute_dicts = st.dictionaries(keys, json_values, max_size=8)
url_paths = st.text(LOWER + LOWER.upper() + DIGITS + "._~/-", max_size=30).map("/".__add__)


@st.composite
def assets(draw: st.DrawFn) -> dict[str, Any]:
    """An asset with a host, an IP or both, and sometimes a transport and port."""
    asset: dict[str, Any] = {}
    which = draw(st.sampled_from(["host", "ip", "both"]))
    if which in ("host", "both"):
        asset["host"] = draw(hosts)
    if which in ("ip", "both"):
        asset["ip"] = draw(loopback_ips)
    if draw(st.booleans()):
        asset["port"] = draw(ports)
        asset["transport"] = draw(transports).value
    return asset


@st.composite
def findings_data(draw: st.DrawFn) -> dict[str, Any]:
    """A valid network.service finding (as a dict) on a random asset, with a port."""
    asset = draw(assets())
    asset.setdefault("port", draw(ports))
    data = finding_data(
        rule_id=draw(rule_ids),
        asset=asset,
        identity=draw(identities),
        attributes=draw(attribute_dicts),
    )
    return data


evidence_items = st.builds(
    lambda type_, content: {"type": type_.value, "content": content},
    st.sampled_from(list(EvidenceType)),
    st.text(max_size=50),
)


@st.composite
def volatile_changes(draw: st.DrawFn) -> dict[str, Any]:
    """New values for every field that must not enter the fingerprint."""
    return {
        "title": draw(st.text(min_size=1, max_size=80)),
        "description": draw(st.none() | st.text(max_size=80)),
        "severity": draw(st.sampled_from(list(Severity))).value,
        "confidence": draw(st.sampled_from(list(Confidence))).value,
        "attributes": draw(attribute_dicts),
        "evidence": draw(st.lists(evidence_items, max_size=3)),
        "remediation": draw(st.none() | st.text(max_size=80)),
        "references": draw(st.lists(st.text(max_size=40), max_size=3)),
        "cve": draw(
            st.lists(
                st.builds("CVE-{}-{:04d}".format, st.integers(1999, 2099), st.integers(1, 10**6)),
                max_size=4,
            )
        ),
        "cwe": draw(st.lists(st.integers(1, 9999).map("CWE-{}".format), max_size=4)),
        "cvss": draw(st.none() | st.floats(min_value=0.0, max_value=10.0)),
    }


def distinct_pairs(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    return st.tuples(strategy, strategy).filter(lambda pair: pair[0] != pair[1])


# -- helpers ---------------------------------------------------------------------------


def finding_data(**changes: Any) -> dict[str, Any]:
    """The example's finding as a dict, with top-level fields replaced."""
    data = copy.deepcopy(EXAMPLE_EVENT["finding"])
    data.update(changes)
    return data


def full_finding_data(**changes: Any) -> dict[str, Any]:
    """A finding whose asset and identity satisfy the requirements of every kind."""
    data = finding_data(
        asset={
            "host": "app.example.test",
            "ip": "127.0.0.1",
            "transport": "tcp",
            "port": 8443,
            "url": "https://app.example.test:8443/login",
        },
        identity={"package": "openssl", "vulnerability_id": "CVE-2024-0001", "domain": "x.test"},
    )
    data.update(changes)
    return data


def fp(data: dict[str, Any]) -> str:
    return fingerprint(Finding.model_validate(data))


def ah(data: dict[str, Any]) -> str:
    return attribute_hash(Finding.model_validate(data))


def reordered(mapping: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """The same mapping with its keys inserted in ``order`` (nested dicts reversed too)."""

    def reverse_nested(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse_nested(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse_nested(v) for v in value]
        return value

    return {k: reverse_nested(mapping[k]) for k in order}


# -- stability -------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), identity=identities, attributes=attribute_dicts)
def test_fingerprint_and_attribute_hash_do_not_depend_on_dict_key_order(
    data: st.DataObject, identity: dict[str, Any], attributes: dict[str, Any]
) -> None:
    identity_order = data.draw(st.permutations(list(identity)))
    attribute_order = data.draw(st.permutations(list(attributes)))
    first = Finding.model_validate(finding_data(identity=identity, attributes=attributes))
    second = Finding.model_validate(
        finding_data(
            identity=reordered(identity, identity_order),
            attributes=reordered(attributes, attribute_order),
        )
    )
    # The models really keep the other insertion order, so the hash must sort.
    assert list(second.identity) == identity_order
    assert list(second.attributes) == attribute_order
    assert fingerprint(first) == fingerprint(second)
    assert attribute_hash(first) == attribute_hash(second)


@PROPERTY
@given(base=findings_data(), changes=volatile_changes())
def test_fingerprint_ignores_every_volatile_field(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    """title, description, severity, confidence, attributes, evidence, remediation,
    references, cve, cwe and cvss never change the fingerprint."""
    changed = {**base, **changes}
    assert fp(changed) == fp(base)


@PROPERTY
@given(
    event_id=st.uuids(),
    tool_version=st.text(min_size=1, max_size=20),
    shift=st.timedeltas(min_value=timedelta(days=-3650), max_value=timedelta(days=3650)),
)
def test_ingest_fingerprint_ignores_event_id_tool_version_and_observed_at(
    event_id: UUID, tool_version: str, shift: timedelta
) -> None:
    original = FindingEvent.model_validate(EXAMPLE_EVENT)
    other_data = copy.deepcopy(EXAMPLE_EVENT)
    other_data["event_id"] = str(event_id)
    other_data["tool"]["version"] = tool_version
    other_data["observed_at"] = (datetime(2026, 1, 1, tzinfo=UTC) + shift).isoformat()
    other = FindingEvent.model_validate(other_data)
    assert to_record(other).fingerprint == to_record(original).fingerprint
    assert to_record(other).fingerprint == fingerprint(original.finding)


# -- separation ------------------------------------------------------------------------


@PROPERTY
@given(pair=distinct_pairs(hosts), port=ports)
def test_fingerprint_differs_between_hosts(pair: tuple[str, str], port: int) -> None:
    a, b = pair
    assert fp(finding_data(asset={"host": a, "port": port})) != fp(
        finding_data(asset={"host": b, "port": port})
    )


@PROPERTY
@given(pair=distinct_pairs(loopback_ips), port=ports)
def test_fingerprint_differs_between_ips(pair: tuple[str, str], port: int) -> None:
    a, b = pair
    assert fp(finding_data(asset={"ip": a, "port": port})) != fp(
        finding_data(asset={"ip": b, "port": port})
    )


@PROPERTY
@given(ip=loopback_ips, pair=distinct_pairs(ports))
def test_fingerprint_differs_between_ports(ip: str, pair: tuple[int, int]) -> None:
    a, b = pair
    assert fp(finding_data(asset={"ip": ip, "port": a})) != fp(
        finding_data(asset={"ip": ip, "port": b})
    )


@PROPERTY
@given(ip=loopback_ips, port=ports)
def test_fingerprint_differs_between_tcp_and_udp(ip: str, port: int) -> None:
    tcp = finding_data(asset={"ip": ip, "port": port, "transport": "tcp"})
    udp = finding_data(asset={"ip": ip, "port": port, "transport": "udp"})
    assert fp(tcp) != fp(udp)


@PROPERTY
@given(pair=distinct_pairs(rule_ids))
def test_fingerprint_differs_between_rule_ids(pair: tuple[str, str]) -> None:
    a, b = pair
    assert fp(finding_data(rule_id=a)) != fp(finding_data(rule_id=b))


@pytest.mark.parametrize(
    ("kind_a", "kind_b"), list(itertools.combinations(list(FindingKind), 2)), ids=str
)
def test_fingerprint_differs_between_kinds(kind_a: FindingKind, kind_b: FindingKind) -> None:
    assert fp(full_finding_data(kind=kind_a.value)) != fp(full_finding_data(kind=kind_b.value))


@PROPERTY
@given(key=keys, pair=distinct_pairs(identity_values), rest=identities)
def test_fingerprint_differs_between_identity_values(
    key: str, pair: tuple[Any, Any], rest: dict[str, Any]
) -> None:
    a, b = pair
    assert fp(finding_data(identity={**rest, key: a})) != fp(
        finding_data(identity={**rest, key: b})
    )


@PROPERTY
@given(pair=distinct_pairs(keys), value=identity_values)
def test_fingerprint_differs_between_identity_keys(pair: tuple[str, str], value: Any) -> None:
    a, b = pair
    assert fp(finding_data(identity={a: value})) != fp(finding_data(identity={b: value}))


def test_fingerprint_differs_between_identity_string_and_number() -> None:
    """ "22" and 22 are different identity values (producers must be consistent)."""
    assert fp(finding_data(identity={"id": "22"})) != fp(finding_data(identity={"id": 22}))


@PROPERTY
@given(host=hosts, pair=distinct_pairs(url_paths))
def test_fingerprint_differs_between_url_paths(host: str, pair: tuple[str, str]) -> None:
    a, b = pair
    first = full_finding_data(kind="web.exposure", asset={"host": host, "url": f"http://{host}{a}"})
    second = full_finding_data(
        kind="web.exposure", asset={"host": host, "url": f"http://{host}{b}"}
    )
    assert fp(first) != fp(second)


# -- URL and address normalisation -----------------------------------------------------


def web(url: str, host: str = "example.test") -> dict[str, Any]:
    return finding_data(kind="web.exposure", asset={"host": host, "url": url})


def test_url_scheme_case_query_fragment_and_default_port_do_not_matter() -> None:
    assert fp(web("HTTP://Example.test/a?x=1#f")) == fp(web("http://example.test:80/a"))


def test_https_default_port_is_made_explicit() -> None:
    assert fp(web("https://example.test/a")) == fp(web("https://example.test:443/a"))


def test_empty_url_path_is_the_root_path() -> None:
    assert fp(web("http://example.test")) == fp(web("http://example.test/"))


def test_url_paths_differ_by_case() -> None:
    assert fp(web("http://example.test/Admin")) != fp(web("http://example.test/admin"))


def test_url_with_a_non_default_port_differs_from_the_default_port() -> None:
    assert fp(web("http://example.test:8080/a")) != fp(web("http://example.test/a"))


@pytest.mark.parametrize("bad_port", ["99999", "abc"])
def test_url_with_an_invalid_port_is_refused_not_read_as_the_default_port(
    bad_port: str,
) -> None:
    with pytest.raises(ValidationError, match="invalid port"):
        fp(web(f"http://example.test:{bad_port}/a"))


@PROPERTY
@given(host=hosts, path=url_paths, query=st.text(LOWER + DIGITS + "=&", max_size=20))
def test_url_host_case_trailing_dot_query_and_fragment_do_not_matter(
    host: str, path: str, query: str
) -> None:
    plain = web(f"http://{host}{path}", host=host)
    noisy = web(f"http://{host.upper()}.{path}?{query}#frag", host=host)
    assert fp(noisy) == fp(plain)


@PROPERTY
@given(host=hosts, port=ports)
def test_asset_host_case_and_trailing_dot_do_not_matter(host: str, port: int) -> None:
    plain = finding_data(asset={"host": host, "port": port})
    noisy = finding_data(asset={"host": f" {host.upper()}. ", "port": port})
    assert fp(noisy) == fp(plain)


@PROPERTY
@given(ip=loopback_ips, port=ports)
def test_port_without_transport_means_tcp(ip: str, port: int) -> None:
    implicit = finding_data(asset={"ip": ip, "port": port})
    explicit = finding_data(asset={"ip": ip, "port": port, "transport": "tcp"})
    assert fp(implicit) == fp(explicit)


def test_equivalent_ipv6_spellings_give_the_same_fingerprint() -> None:
    assert fp(finding_data(asset={"ip": "::FFFF:127.0.0.1", "port": 22})) == fp(
        finding_data(asset={"ip": "0:0:0:0:0:ffff:7f00:1", "port": 22})
    )


# -- attribute hash --------------------------------------------------------------------


@PROPERTY
@given(pair=distinct_pairs(st.sampled_from(list(Severity))))
def test_attribute_hash_changes_with_severity(pair: tuple[Severity, Severity]) -> None:
    a, b = pair
    assert ah(finding_data(severity=a.value)) != ah(finding_data(severity=b.value))


@PROPERTY
@given(pair=distinct_pairs(st.text(min_size=1, max_size=80)))
def test_attribute_hash_changes_with_title(pair: tuple[str, str]) -> None:
    a, b = pair
    assert ah(finding_data(title=a)) != ah(finding_data(title=b))


@PROPERTY
@given(pair=distinct_pairs(attribute_dicts))
def test_attribute_hash_changes_with_attributes(pair: tuple[dict, dict]) -> None:
    a, b = pair
    assert ah(finding_data(attributes=a)) != ah(finding_data(attributes=b))


@PROPERTY
@given(data=st.data(), attributes=attribute_dicts)
def test_attribute_hash_is_stable_under_attribute_key_order(
    data: st.DataObject, attributes: dict[str, Any]
) -> None:
    order = data.draw(st.permutations(list(attributes)))
    assert ah(finding_data(attributes=attributes)) == ah(
        finding_data(attributes=reordered(attributes, order))
    )


def test_attribute_hash_ignores_the_order_of_cve_and_cwe_lists() -> None:
    forward = finding_data(cve=["CVE-2024-0001", "CVE-2023-1234"], cwe=["CWE-79", "CWE-20"])
    backward = finding_data(cve=["CVE-2023-1234", "CVE-2024-0001"], cwe=["CWE-20", "CWE-79"])
    assert ah(forward) == ah(backward)


def test_attribute_hash_changes_when_a_version_attribute_changes() -> None:
    """A new banner version is "updated", not "new": same fingerprint, new attribute hash."""
    old = finding_data()
    new = finding_data(attributes={**old["attributes"], "version": "9.6p1"})
    assert fp(new) == fp(old)
    assert ah(new) != ah(old)


# -- byte format -----------------------------------------------------------------------

HEX64 = re.compile(r"[0-9a-f]{64}")


@PROPERTY
@given(data=findings_data())
def test_fingerprint_and_attribute_hash_are_64_lowercase_hex_chars(data: dict[str, Any]) -> None:
    assert HEX64.fullmatch(fp(data))
    assert HEX64.fullmatch(ah(data))


def test_example_fingerprint_is_pinned_so_stored_fingerprints_stay_valid() -> None:
    """The byte form is a stored contract: changing it would make every finding "new"."""
    material = (
        b'{"asset":{"address":"127.0.0.1","port":22,"transport":"tcp"},'
        b'"identity":{},"kind":"network.service","rule_id":"open-port"}'
    )
    expected = hashlib.sha256(material).hexdigest()
    assert expected == "d46ae8a51a6f0dc66af51670249642b21ef917da27340dfedcd9826fb23f104e"
    assert fp(finding_data()) == expected


def test_canonical_json_sorts_nested_keys_without_whitespace() -> None:
    value = {"b": 1, "a": [1, {"d": 2, "c": "x y"}], "é": None}
    assert canonical_json(value) == '{"a":[1,{"c":"x y","d":2}],"b":1,"é":null}'.encode()


def _key_orders(document: bytes) -> list[list[str]]:
    orders: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        orders.append([k for k, _ in pairs])
        return dict(pairs)

    json.loads(document, object_pairs_hook=hook)
    return orders


@PROPERTY
@given(
    value=st.dictionaries(
        keys,
        st.recursive(
            st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.text(LOWER + DIGITS, max_size=10),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
            max_leaves=12,
        ),
        max_size=8,
    )
)
def test_canonical_json_has_sorted_keys_at_every_level_and_no_whitespace(
    value: dict[str, Any],
) -> None:
    document = canonical_json(value)
    assert json.loads(document) == value
    assert not re.search(rb"\s", document)
    for order in _key_orders(document):
        assert order == sorted(order)


# -- the implementation may get faster, the bytes hashed may not change -------------------


def _reference_fingerprint(finding: Finding) -> str:
    """The fingerprint as first implemented (``.value`` of each enum, the same JSON)."""
    from contracts.fingerprint import normalise_url

    asset = finding.asset
    identity: dict[str, Any] = {"address": asset.host if asset.host is not None else asset.ip}
    if asset.transport is not None:
        identity["transport"] = asset.transport.value
    if asset.port is not None:
        identity["port"] = asset.port
    if asset.url is not None:
        identity["url"] = normalise_url(asset.url)
    material = {
        "kind": finding.kind.value,
        "rule_id": finding.rule_id,
        "asset": identity,
        "identity": finding.identity,
    }
    return hashlib.sha256(canonical_json(material)).hexdigest()


def _reference_attribute_hash(finding: Finding) -> str:
    material = {
        "title": finding.title,
        "severity": finding.severity.value,
        "confidence": finding.confidence.value,
        "attributes": finding.attributes,
        "cve": sorted(finding.cve),
        "cwe": sorted(finding.cwe),
        "cvss": finding.cvss,
    }
    return hashlib.sha256(canonical_json(material)).hexdigest()


@st.composite
def any_findings(draw: st.DrawFn) -> Finding:
    """Findings of every kind, severity and confidence, with and without URLs."""
    data = draw(findings_data())
    data["kind"] = draw(st.sampled_from(list(FindingKind))).value
    data["severity"] = draw(st.sampled_from(list(Severity))).value
    data["confidence"] = draw(st.sampled_from(list(Confidence))).value
    data["identity"] = {**data["identity"], "domain": "example.test", "package": "p"}
    data["identity"]["vulnerability_id"] = "CVE-2026-0001"
    if data["kind"] == FindingKind.WEB_EXPOSURE.value or draw(st.booleans()):
        host = data["asset"].get("host") or "example.test"
        data["asset"]["url"] = f"HTTPS://{host.upper()}.{draw(url_paths)}?q=1"
    data["cve"] = draw(st.lists(st.sampled_from(["CVE-2026-0002", "CVE-2025-12345"]), max_size=2))
    data["cvss"] = draw(st.none() | st.floats(min_value=0, max_value=10))
    return Finding.model_validate(data)


@settings(max_examples=500, deadline=None)
@given(finding=any_findings())
def test_fingerprint_and_attribute_hash_equal_the_reference_implementation(
    finding: Finding,
) -> None:
    assert fingerprint(finding) == _reference_fingerprint(finding)
    assert attribute_hash(finding) == _reference_attribute_hash(finding)
    record = to_record(FindingEvent.model_validate({**EXAMPLE_EVENT, "finding": finding}))
    assert record.fingerprint == fingerprint(finding)
    assert record.attr_hash == attribute_hash(finding)
    assert (record.kind, record.severity, record.confidence) == (
        finding.kind.value,
        finding.severity.value,
        finding.confidence.value,
    )
    assert record.transport == (finding.asset.transport.value if finding.asset.transport else None)
