"""Targets become validated values or are refused by a named rule; scope is enforced."""

from __future__ import annotations

import pytest

from coordinator.scope import LOOPBACK_SCOPE, Scope
from coordinator.targets import TargetRefused, parse_target

LOOPBACK = Scope.parse(LOOPBACK_SCOPE)


@pytest.mark.parametrize(
    ("value", "texts"),
    [
        ("127.0.0.1", ["127.0.0.1"]),
        (" 127.0.0.1 ", ["127.0.0.1"]),
        ("127.0.0.0/30", ["127.0.0.1", "127.0.0.2"]),
        ("127.0.0.5/32", ["127.0.0.5"]),
        ("::1", ["::1"]),
        ("[::1]:8443", ["[::1]:8443"]),
        ("127.0.0.1:8443", ["127.0.0.1:8443"]),
        ("LOCALHOST.", ["localhost"]),
        ("http://127.0.0.1:8080/app?x=1", ["http://127.0.0.1:8080/app?x=1"]),
        ("HTTPS://localhost", ["https://localhost/"]),
        ("::ffff:127.0.0.1", ["127.0.0.1"]),
    ],
)
def test_accepted_targets_become_canonical_values_in_scope(value: str, texts: list[str]) -> None:
    parsed = list(parse_target(value))
    assert [p.text() for p in parsed] == texts
    for target in parsed:
        LOOPBACK.check(target, resolve=False) if target.host else LOOPBACK.check(target)
        # Parsing the canonical text again gives the same target.
        assert list(parse_target(target.text())) == [target]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "empty"),
        ("-iL /etc/passwd", "option-like"),
        ("--script=vuln", "option-like"),
        ("-sV", "option-like"),
        ("$(id)", "forbidden-character"),
        ("`id`", "forbidden-character"),
        ("127.0.0.1;id", "forbidden-character"),
        ("127.0.0.1 && id", "forbidden-character"),
        ("a|b", "forbidden-character"),
        ("host name", "forbidden-character"),
        ("127.0.0.1,10.0.0.1", "forbidden-character"),
        ("2130706433", "ambiguous-ip-spelling"),
        ("0x7f.0.0.1", "ambiguous-ip-spelling"),
        ("0177.0.0.1", "ambiguous-ip-spelling"),
        ("127.1", "ambiguous-ip-spelling"),
        ("a" * 300, "name-too-long"),
        ("x" * 3000, "too-long"),
        ("bad_label.test", "invalid-host-name"),
        ("-lead.test", "option-like"),
        ("127.0.0.1:0", "invalid-port"),
        ("127.0.0.1:70000", "invalid-port"),
        ("ftp://127.0.0.1/", "url-scheme"),
        ("file:///etc/passwd", "url-scheme"),
        ("http://user:pw@127.0.0.1/", "url-credentials"),
        ("http://127.0.0.1:99999/", "invalid-port"),
        ("127.0.0.0/33", "invalid-cidr"),
        ("10.0.0.0/8", "cidr-too-large"),
    ],
)
def test_hostile_or_malformed_targets_are_refused_with_their_rule(value: str, rule: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        list(parse_target(value))
    assert refused.value.rule == rule
    assert f"rule {rule}" in str(refused.value)


@pytest.mark.parametrize(
    "value",
    ["10.0.0.1", "192.168.1.1", "8.8.8.8", "::ffff:10.0.0.1", "2001:db8::1", "128.0.0.1"],
)
def test_addresses_outside_the_scope_are_refused_as_out_of_scope(value: str) -> None:
    (target,) = parse_target(value)
    with pytest.raises(TargetRefused) as refused:
        LOOPBACK.check(target)
    assert refused.value.rule == "out-of-scope"


def test_names_and_wildcards_in_the_allowlist_are_in_scope_without_resolution() -> None:
    scope = Scope.parse(["*.corp.test", "app.test", "127.0.0.0/8"])
    for value in ("a.corp.test", "x.y.corp.test", "app.test"):
        (target,) = parse_target(value)
        assert scope.check(target, resolve=False) == []
    (other,) = parse_target("corp.test")
    with pytest.raises(TargetRefused, match="out-of-scope"):
        scope.check(other, resolve=False)


def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    (target,) = parse_target("localhost")
    addresses = Scope.parse(["127.0.0.0/8", "::1/128"]).check(target)
    assert "127.0.0.1" in addresses
    with pytest.raises(TargetRefused) as refused:
        Scope.parse(["10.0.0.0/8"]).check(target)
    assert refused.value.rule == "resolves-out-of-scope"
