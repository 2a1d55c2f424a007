"""The nmap parser on real recorded ``nmap -oX -`` output, and on output it must refuse."""

from __future__ import annotations

import pytest

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity, Transport
from tests.fixtures.tools.record import load_case
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.nmap import NmapTool
from workers.tools.nmap.parser import parse


def test_one_open_port_finding_per_open_port_and_none_for_the_closed_one() -> None:
    raw, target, meta = load_case("nmap", "loopback-services")
    findings = parse(raw, target)
    assert sorted(f.asset.port or 0 for f in findings) == sorted(
        [meta["ports"]["ssh"], meta["ports"]["http"]]
    )
    assert meta["ports"]["closed"] not in {f.asset.port for f in findings}
    for finding in findings:
        assert finding.kind is FindingKind.NETWORK_SERVICE
        assert finding.rule_id == "open-port"
        assert finding.severity is Severity.INFO
        assert finding.confidence is Confidence.HIGH
        assert finding.asset.ip == "127.0.0.1"
        assert finding.asset.host is None
        assert finding.asset.transport is Transport.TCP


def test_version_detection_results_become_attributes_and_a_banner() -> None:
    raw, target, meta = load_case("nmap", "loopback-services")
    by_port = {f.asset.port: f for f in parse(raw, target)}
    ssh = by_port[meta["ports"]["ssh"]]
    assert ssh.attributes == {
        "service": "ssh",
        "product": "OpenSSH",
        "version": "9.2p1 Debian 2+deb12u3",
        "extrainfo": "protocol 2.0",
    }
    assert [e.type for e in ssh.evidence] == [EvidenceType.BANNER]
    assert ssh.evidence[0].content == "OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)"
    http = by_port[meta["ports"]["http"]]
    assert http.attributes["service"] == "http"
    assert http.attributes["product"] == "BaseHTTPServer"
    assert "tunnel" not in http.attributes


def test_host_name_reported_by_nmap_goes_on_the_asset() -> None:
    raw, target, meta = load_case("nmap", "by-host-name")
    [finding] = parse(raw, target)
    assert finding.asset.host == "localhost"
    assert finding.asset.ip == "127.0.0.1"
    assert finding.asset.port == meta["ports"]["ssh"]


def test_ipv6_address_is_kept_canonical() -> None:
    raw, target, meta = load_case("nmap", "ipv6-loopback")
    [finding] = parse(raw, target)
    assert finding.asset.ip == "::1"
    assert finding.asset.port == meta["ports"]["ssh"]


def test_a_finished_scan_with_no_open_port_gives_no_findings() -> None:
    raw, target, _ = load_case("nmap", "no-open-ports")
    assert parse(raw, target) == []


def test_target_host_name_is_used_when_nmap_scanned_its_resolved_ip() -> None:
    raw, _, _ = load_case("nmap", "loopback-services")
    findings = parse(raw, Target(host="web.internal", ip="127.0.0.1"))
    assert {f.asset.host for f in findings} == {"web.internal"}
    elsewhere = parse(raw, Target(host="web.internal", ip="10.0.0.7"))
    assert {f.asset.host for f in elsewhere} == {None}


def test_tool_parse_delegates_to_the_parser() -> None:
    raw, target, _ = load_case("nmap", "loopback-services")
    ctx = RunContext(target=target, time_limit_s=60)
    assert NmapTool().parse(raw, ctx) == parse(raw, target)


# -- output that must fail the task ------------------------------------------------------


def _recorded() -> bytes:
    return load_case("nmap", "loopback-services")[0]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"Starting Nmap 7.93 ( https://nmap.org )\nFailed to resolve", "well-formed"),
        (b"<nmaprun><host>", "well-formed"),
        (b'<?xml version="1.0"?><html><body>nope</body></html>', "not an nmaprun"),
        (b"\x00\xff\xfe garbage", "well-formed"),
    ],
)
def test_malformed_or_foreign_output_is_a_tool_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ToolError, match=reason):
        parse(raw, Target(ip="127.0.0.1"))


def test_output_cut_before_the_end_is_a_tool_error() -> None:
    raw = _recorded()
    with pytest.raises(ToolError, match="well-formed"):
        parse(raw[: len(raw) // 2], Target(ip="127.0.0.1"))


def test_a_run_without_runstats_is_a_tool_error() -> None:
    raw = _recorded()
    start, end = raw.index(b"<runstats>"), raw.index(b"</runstats>") + len(b"</runstats>")
    with pytest.raises(ToolError, match="did not finish"):
        parse(raw[:start] + raw[end:], Target(ip="127.0.0.1"))


def test_an_error_exit_reported_by_nmap_is_a_tool_error() -> None:
    raw = _recorded().replace(b'exit="success"', b'exit="error" errormsg="socket troubles"')
    with pytest.raises(ToolError, match="socket troubles"):
        parse(raw, Target(ip="127.0.0.1"))


def test_a_timed_out_host_is_a_tool_error_not_an_empty_result() -> None:
    raw = _recorded().replace(b'<host starttime="', b'<host timedout="true" starttime="')
    with pytest.raises(ToolError, match="timed out"):
        parse(raw, Target(ip="127.0.0.1"))


ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
]>
<nmaprun><runstats><finished exit="success"/></runstats>&b;</nmaprun>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun SYSTEM "file:///etc/passwd">
<nmaprun><runstats><finished exit="success"/></runstats></nmaprun>
"""


@pytest.mark.parametrize(
    "raw",
    [
        ENTITY_BOMB,
        EXTERNAL_ENTITY,
        b'<!ENTITY x "y"><nmaprun/>',
        b"<!doctype nmaprun><nmaprun/>",
        b"<!DOCTYPE nmaprun>\n<!DOCTYPE nmaprun>\n<nmaprun/>",
    ],
    ids=["entity-expansion", "external-doctype", "bare-entity", "lower-case", "two-doctypes"],
)
def test_doctype_with_declarations_or_entities_is_refused(raw: bytes) -> None:
    with pytest.raises(ToolError, match="refused"):
        parse(raw, Target(ip="127.0.0.1"))


def test_the_bare_doctype_nmap_writes_is_accepted() -> None:
    raw = _recorded()
    assert b"<!DOCTYPE nmaprun>" in raw
    assert parse(raw, Target(ip="127.0.0.1"))


def test_an_invalid_port_number_is_a_tool_error() -> None:
    raw, target, meta = load_case("nmap", "by-host-name")
    bad = raw.replace(f'portid="{meta["ports"]["ssh"]}"'.encode(), b'portid="70000"')
    with pytest.raises(ToolError, match="invalid port"):
        parse(bad, target)
