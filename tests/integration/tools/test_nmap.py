"""The real nmap from Debian against loopback listeners started here, through the plugin's
own argument list and parser.

Skipped only where nmap is not installed and CI is not set: under CI nmap must be there.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from contracts.fingerprint import fingerprint
from tests.fixtures.tools.record import closed_port
from tests.fixtures.tools.servers import SSH_BANNER, TcpListener
from workers.tools.base import RunContext, Target
from workers.tools.nmap import NmapTool
from workers.tools.tcp_ports import TcpPortsTool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("nmap") is None and not os.environ.get("CI"),
        reason="nmap is not installed (apt-get install nmap); required when CI is set",
    ),
]


def run(ctx: RunContext) -> bytes:
    tool = NmapTool()
    invocation = tool.invocation(ctx)
    result = subprocess.run(
        invocation.argv, capture_output=True, timeout=ctx.time_limit_s, check=False
    )
    assert result.returncode in invocation.ok_exit_codes, result.stderr.decode()
    return result.stdout


def test_nmap_reports_exactly_the_open_port_of_a_plain_listener() -> None:
    with TcpListener() as listener:
        closed = closed_port()
        ctx = RunContext(
            Target(ip="127.0.0.1"),
            time_limit_s=120,
            options={"ports": f"{listener.port},{closed}"},
        )
        findings = NmapTool().parse(run(ctx), ctx)
    assert [(f.rule_id, f.asset.ip, f.asset.port) for f in findings] == [
        ("open-port", "127.0.0.1", listener.port)
    ]


def test_nmap_identifies_a_service_by_its_banner_within_the_rate_budget() -> None:
    with TcpListener(SSH_BANNER) as ssh:
        ctx = RunContext(
            Target(ip="127.0.0.1"), time_limit_s=120, rps=100.0, options={"ports": [ssh.port]}
        )
        assert "--max-rate" in NmapTool().invocation(ctx).argv
        [finding] = NmapTool().parse(run(ctx), ctx)
    assert finding.asset.port == ssh.port
    assert finding.attributes["service"] == "ssh"
    assert finding.attributes["product"] == "OpenSSH"


def test_nmap_and_tcp_ports_give_the_same_fingerprint_for_the_same_port() -> None:
    with TcpListener() as listener:
        ctx = RunContext(
            Target(ip="127.0.0.1"), time_limit_s=120, options={"ports": [listener.port]}
        )
        from_nmap = NmapTool().parse(run(ctx), ctx)
        tcp_ports = TcpPortsTool()
        from_builtin = tcp_ports.parse(tcp_ports.collect(ctx), ctx)
    assert len(from_nmap) == 1
    assert [fingerprint(f) for f in from_nmap] == [fingerprint(f) for f in from_builtin]


def test_nmap_version_is_probed_from_the_binary() -> None:
    version = NmapTool().version()
    assert version[0].isdigit()
    assert "." in version
