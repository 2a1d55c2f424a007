"""Targets become validated values or are refused by a named rule; scope is enforced."""

from __future__ import annotations

import pytest

from contracts.errors import ConfigError
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
        ("[::1]", ["::1"]),
        ("::ffff:127.0.0.0/126", ["127.0.0.1", "127.0.0.2"]),
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
        ("0x7f000001", "ambiguous-ip-spelling"),
        ("0x0a.0.0.1", "ambiguous-ip-spelling"),
        ("017700000001", "ambiguous-ip-spelling"),
        ("127.0.0.1.", "ambiguous-ip-spelling"),
        ("host.0x1f", "ambiguous-ip-spelling"),
        ("http://0x7f.1/", "ambiguous-ip-spelling"),
        ("0.0.0.0", "unspecified-address"),
        ("[::]", "unspecified-address"),
        ("0.0.0.0/32", "unspecified-address"),
        ("http://[::]:80/", "unspecified-address"),
        ("[foo]:80", "invalid-address"),
        ("[::1]x", "invalid-address"),
        ("fe80::1%eth0", "forbidden-character"),
        ("http://[fe80::1%25eth0]/", "forbidden-character"),
        ("http://127.0.0.1/a b", "forbidden-character"),
        ("http://127.0.0.1/\r\nHost: x", "forbidden-character"),
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


DENYING = Scope.parse(
    [
        "127.0.0.0/8",
        "::1/128",
        "*.corp.test",
        "app.test",
        "!127.0.0.53",
        "!::ffff:127.0.0.54/127",
        "!db.corp.test",
        "!*.prod.corp.test",
    ]
)


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("127.0.0.53", "!127.0.0.53/32"),
        ("::ffff:127.0.0.53", "!127.0.0.53/32"),
        ("127.0.0.55:80", "!127.0.0.54/31"),
        ("https://127.0.0.53:8443/x", "!127.0.0.53/32"),
        ("127.0.0.53/32", "!127.0.0.53/32"),
        ("127.0.0.48/28", "!127.0.0.53/32"),
        ("db.corp.test", "!db.corp.test"),
        ("http://DB.corp.test./", "!db.corp.test"),
        ("prod.corp.test", "!*.prod.corp.test"),
        ("a.b.prod.corp.test:22", "!*.prod.corp.test"),
    ],
)
def test_deny_entries_win_over_the_allowlist_and_are_named(value: str, entry: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        for target in parse_target(value):
            DENYING.check(target, resolve=False)
    assert refused.value.rule == "denied"
    assert entry in refused.value.detail


def test_a_cidr_is_judged_whole_before_any_of_its_addresses() -> None:
    scope = Scope.parse(["127.0.0.0/25", "127.0.0.128/25", "!127.0.0.200"])
    (first, *_) = parse_target("127.0.0.0/24")  # two adjacent allow entries cover it
    with pytest.raises(TargetRefused) as refused:
        scope.check(first)
    assert refused.value.rule == "denied"  # .200 is inside: the whole CIDR is refused
    (first, *_) = parse_target("127.0.0.0/26")
    assert scope.check(first) == ["127.0.0.1"]
    (first, *_) = parse_target("126.255.255.254/31")
    with pytest.raises(TargetRefused) as refused:
        scope.check(first)
    assert refused.value.rule == "out-of-scope"
    (first, *_) = parse_target("::/126")  # ::1 is in LOOPBACK, ::2 and ::3 are not
    with pytest.raises(TargetRefused) as refused:
        LOOPBACK.check(first)
    assert refused.value.rule == "out-of-scope"
    assert "::/126" in refused.value.detail


def test_deny_entries_are_part_of_the_description_and_parse_keeps_the_old_shape() -> None:
    assert DENYING.describe() == (
        "127.0.0.0/8, ::1/128, app.test, *.corp.test, "
        "!127.0.0.53/32, !127.0.0.54/31, !db.corp.test, !*.prod.corp.test"
    )
    assert Scope.parse(LOOPBACK_SCOPE).describe() == "127.0.0.0/8, ::1/128, localhost"
    assert Scope.parse(["!127.0.0.53"]).describe() != Scope.parse(["127.0.0.53"]).describe()
    assert (
        Scope.parse([" ! 10.0.0.0/8 "]).denied_networks
        == Scope.parse(["!10.0.0.0/8"]).denied_networks
    )


@pytest.mark.parametrize(
    "entry", ["!", "! ", "!10.1", "!0x0a.0.0.1", "host:80", "bad_name.test", "*.-x.test"]
)
def test_malformed_scope_entries_are_configuration_errors(entry: str) -> None:
    with pytest.raises(ConfigError, match="scope entry"):
        Scope.parse([entry])


def test_names_allowed_by_name_are_resolved_and_pinned_when_there_are_deny_cidrs() -> None:
    (target,) = parse_target("localhost")
    # No deny CIDR: an allowed name is not resolved (the tool connects by name).
    assert LOOPBACK.check(target) == []
    # With one, its addresses are checked against it and returned to be pinned.
    assert "127.0.0.1" in Scope.parse([*LOOPBACK_SCOPE, "!10.0.0.0/8"]).check(target)
    with pytest.raises(TargetRefused) as refused:
        Scope.parse([*LOOPBACK_SCOPE, "!127.0.0.1"]).check(target)
    assert refused.value.rule == "resolves-denied"
    assert "!127.0.0.1/32" in refused.value.detail
    # A name not allowed by name: its addresses must be allowed and not denied.
    with pytest.raises(TargetRefused) as refused:
        Scope.parse(["127.0.0.0/8", "!127.0.0.0/24"]).check(target)
    assert refused.value.rule == "resolves-denied"
