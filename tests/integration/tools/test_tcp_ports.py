"""The built-in tcp-ports scan against loopback listeners started here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from contracts.enums import EvidenceType
from contracts.finding import Finding
from tests.fixtures.tools.record import closed_port
from tests.fixtures.tools.servers import SSH_BANNER, SilentListener, TcpListener
from tests.integration.tools.conftest import RecordingPacer
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.tcp_ports import TcpPortsTool

pytestmark = pytest.mark.integration


def scan(ports: list[int], **options: object) -> tuple[dict[str, Any], list[Finding]]:
    tool = TcpPortsTool()
    ctx = RunContext(Target(ip="127.0.0.1"), time_limit_s=60, options={"ports": ports, **options})
    raw = tool.collect(ctx)
    return json.loads(raw), tool.parse(raw, ctx)


def test_reports_exactly_the_open_port_of_a_plain_listener() -> None:
    with TcpListener() as listener:
        closed = closed_port()
        observed, findings = scan([listener.port, closed])
    assert [(f.rule_id, f.asset.ip, f.asset.port) for f in findings] == [
        ("open-port", "127.0.0.1", listener.port)
    ]
    assert findings[0].evidence == []
    assert (observed["ports_scanned"], observed["closed"], observed["filtered"]) == (2, 1, 0)


def test_a_host_port_target_scans_only_its_port() -> None:
    with TcpListener() as listener:
        tool = TcpPortsTool()
        ctx = RunContext(Target(ip="127.0.0.1", port=listener.port), time_limit_s=60)
        observed = json.loads(tool.collect(ctx))
    assert observed["ports_scanned"] == 1
    assert observed["open"] == [{"port": listener.port, "banner": None}]


def test_reads_a_banner_the_service_sends_unasked() -> None:
    with TcpListener(SSH_BANNER) as ssh:
        _, [finding] = scan([ssh.port])
    [evidence] = finding.evidence
    assert evidence.type is EvidenceType.BANNER
    assert evidence.content == SSH_BANNER.decode().strip()


def test_a_silent_service_is_open_without_a_banner() -> None:
    with SilentListener() as silent:
        _, [finding] = scan([silent.port], banner_timeout_s=0.05)
    assert finding.asset.port == silent.port
    assert finding.evidence == []


def test_every_connection_attempt_is_paced_at_the_task_rate(
    recording_pacer: Callable[[str], list[RecordingPacer]],
) -> None:
    pacers = recording_pacer("workers.tools.tcp_ports")
    with TcpListener() as first, TcpListener() as second:
        tool = TcpPortsTool()
        ctx = RunContext(
            Target(ip="127.0.0.1"),
            time_limit_s=60,
            rps=50.0,
            options={"ports": [first.port, second.port], "concurrency": 1},
        )
        findings = tool.parse(tool.collect(ctx), ctx)
    assert sorted(f.asset.port or 0 for f in findings) == sorted([first.port, second.port])
    [pacer] = pacers
    assert (pacer.rps, pacer.reservations) == (50.0, 2)


def test_a_scan_that_cannot_finish_in_its_time_limit_fails() -> None:
    with SilentListener() as silent:
        ctx = RunContext(
            Target(ip="127.0.0.1"),
            time_limit_s=0.2,
            options={"ports": [silent.port], "banner_timeout_s": 5},
        )
        with pytest.raises(ToolError, match="did not finish"):
            TcpPortsTool().collect(ctx)


def test_host_name_target_is_resolved_once_and_kept_on_the_asset() -> None:
    with TcpListener() as listener:
        tool = TcpPortsTool()
        ctx = RunContext(
            Target(host="localhost"), time_limit_s=60, options={"ports": [listener.port]}
        )
        observed = json.loads(tool.collect(ctx))
        if observed["ip"] != "127.0.0.1":
            pytest.skip(f"localhost resolves to {observed['ip']} first here")
        [finding] = tool.parse(json.dumps(observed).encode(), ctx)
    assert (finding.asset.host, finding.asset.ip) == ("localhost", "127.0.0.1")


@pytest.mark.parametrize("target", [Target(ip="-iL"), Target(host="--help")])
def test_option_like_targets_are_refused_before_any_connection(target: Target) -> None:
    with pytest.raises(ToolError, match="refused target"):
        TcpPortsTool().collect(RunContext(target, time_limit_s=5, options={"ports": [1]}))
