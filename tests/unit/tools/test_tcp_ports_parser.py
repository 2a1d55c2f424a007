"""The tcp-ports parser on real recorded output; its findings agree with nmap's."""

from __future__ import annotations

import json

import pytest

from contracts.enums import EvidenceType, FindingKind, Transport
from contracts.fingerprint import fingerprint
from tests.fixtures.tools.record import load_case
from workers.tools.base import Target, ToolError
from workers.tools.nmap.parser import parse as parse_nmap
from workers.tools.tcp_ports.parser import parse, printable


def test_one_open_port_finding_per_open_port() -> None:
    raw, target, meta = load_case("tcp_ports", "loopback-services")
    findings = parse(raw, target)
    assert sorted(f.asset.port or 0 for f in findings) == sorted(
        [meta["ports"]["ssh"], meta["ports"]["http"]]
    )
    for finding in findings:
        assert finding.kind is FindingKind.NETWORK_SERVICE
        assert finding.rule_id == "open-port"
        assert finding.asset.ip == "127.0.0.1"
        assert finding.asset.transport is Transport.TCP


def test_a_banner_sent_unasked_becomes_banner_evidence() -> None:
    raw, target, meta = load_case("tcp_ports", "loopback-services")
    by_port = {f.asset.port: f for f in parse(raw, target)}
    ssh = by_port[meta["ports"]["ssh"]]
    assert [e.type for e in ssh.evidence] == [EvidenceType.BANNER]
    assert ssh.evidence[0].content == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    assert by_port[meta["ports"]["http"]].evidence == []


def test_same_open_port_has_the_same_fingerprint_from_nmap_and_tcp_ports() -> None:
    """Both recordings ran against the same loopback services."""
    raw, target, _ = load_case("tcp_ports", "loopback-services")
    nmap_raw, nmap_target, _ = load_case("nmap", "loopback-services")
    ours = {fingerprint(f) for f in parse(raw, target)}
    theirs = {fingerprint(f) for f in parse_nmap(nmap_raw, nmap_target)}
    assert len(ours) == 2
    assert ours == theirs


def test_service_is_guessed_from_well_known_ports_only() -> None:
    raw = json.dumps(
        {
            "ip": "127.0.0.1",
            "ports_scanned": 2,
            "open": [{"port": 22}, {"port": 40000}],
            "closed": 0,
            "filtered": 0,
        }
    ).encode()
    by_port = {f.asset.port: f for f in parse(raw, Target(ip="127.0.0.1"))}
    assert by_port[22].attributes == {"service": "ssh"}
    assert by_port[40000].attributes == {}


def test_control_characters_in_banners_are_escaped_and_length_capped() -> None:
    assert printable("220 hello\x1b[31m\x00\r\n") == "220 hello\\x1b[31m\\x00"
    assert printable("x" * 5000) == "x" * 200
    assert printable("  \r\n") is None
    assert printable(None) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"not json", "not valid"),
        (b"[]", "not valid"),
        (b'{"ip": "127.0.0.1"}', "ports_scanned"),
        (
            b'{"ip": "127.0.0.1", "ports_scanned": 1, "open": [{"port": 0}], '
            b'"closed": 0, "filtered": 0}',
            "open.0.port",
        ),
        (
            b'{"ip": "-iL", "ports_scanned": 1, "open": [], "closed": 0, "filtered": 0}',
            "invalid ip",
        ),
        (
            b'{"tool": "nmap", "ip": "127.0.0.1", "ports_scanned": 0, "open": [], '
            b'"closed": 0, "filtered": 0}',
            "tool",
        ),
    ],
)
def test_malformed_output_is_a_tool_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ToolError, match=reason):
        parse(raw, Target(ip="127.0.0.1"))
