"""The built-in tls-cert check against TLS servers started here with certificates made
here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.tools.certificates import Issued, issue
from tests.fixtures.tools.record import closed_port
from tests.fixtures.tools.servers import HttpServer, Page
from tests.integration.tools.conftest import RecordingPacer
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.tls_cert import TlsCertTool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def expired_self_signed() -> Issued:
    now = datetime.now(UTC)
    return issue(
        "expired.test",
        valid_from=now - timedelta(days=90),
        valid_until=now - timedelta(days=1),
        sans=("expired.test",),
    )


def check(target: Target) -> set[str]:
    tool = TlsCertTool()
    ctx = RunContext(target, time_limit_s=30)
    return {f.rule_id for f in tool.parse(tool.collect(ctx), ctx)}


def test_expired_self_signed_certificate(
    expired_self_signed: Issued, recording_pacer: Callable[[str], list[RecordingPacer]]
) -> None:
    pacers = recording_pacer("workers.tools.tls_cert")
    with HttpServer({"/": Page()}, tls=expired_self_signed) as server:
        tool = TlsCertTool()
        ctx = RunContext(Target(ip="127.0.0.1", port=server.port), time_limit_s=30, rps=10.0)
        findings = tool.parse(tool.collect(ctx), ctx)
    [pacer] = pacers
    assert (pacer.rps, pacer.reservations) == (10.0, 2)  # two handshakes, both paced
    assert sorted(f.rule_id for f in findings) == ["cert-expired", "cert-self-signed"]
    for finding in findings:
        assert (finding.asset.ip, finding.asset.port) == ("127.0.0.1", server.port)
        assert finding.attributes["issuer"] == "CN=expired.test"


def test_https_url_target_checks_the_url_host_name(expired_self_signed: Issued) -> None:
    with HttpServer({"/": Page()}, tls=expired_self_signed) as server:
        url = server.url(host="localhost")
        rules = check(Target(host="localhost", ip="127.0.0.1", url=url))
    assert rules == {"cert-expired", "cert-self-signed", "cert-hostname-mismatch"}


def test_a_private_ca_certificate_for_the_right_name_is_untrusted_only() -> None:
    ca = issue("integration CA", ca=True)
    leaf = issue("localhost", issuer=ca, sans=("localhost",))
    with HttpServer({"/": Page()}, tls=leaf) as server:
        rules = check(Target(host="localhost", ip="127.0.0.1", port=server.port))
    assert rules == {"cert-untrusted"}


def test_a_plain_tcp_service_is_a_tool_error() -> None:
    with HttpServer({"/": Page()}) as server, pytest.raises(ToolError, match="TLS handshake"):
        check(Target(ip="127.0.0.1", port=server.port))


def test_a_closed_port_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="TLS handshake"):
        check(Target(ip="127.0.0.1", port=closed_port()))


@pytest.mark.parametrize(
    "target",
    [Target(ip="-iL", port=443), Target(url="http://127.0.0.1/"), Target(url="https:///x")],
)
def test_bad_targets_are_refused(target: Target) -> None:
    with pytest.raises(ToolError, match="refused"):
        check(target)
