"""The built-in http-headers check against HTTP(S) servers started here on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.finding import Finding
from tests.fixtures.tools.certificates import issue
from tests.fixtures.tools.record import closed_port
from tests.fixtures.tools.servers import HttpServer, Page
from tests.integration.tools.conftest import RecordingPacer
from workers.tools.base import RunContext, Target, ToolError
from workers.tools.http_headers import HttpHeadersTool

pytestmark = pytest.mark.integration

INSECURE_PAGE = Page(
    headers=[
        ("Content-Type", "text/html"),
        ("Set-Cookie", "session=0123456789abcdef; Path=/"),
        ("X-Session-Token", "tok_9f8e7d"),
    ]
)


def fetch(target: Target, rps: float | None = None) -> tuple[dict[str, Any], list[Finding]]:
    tool = HttpHeadersTool()
    ctx = RunContext(target, time_limit_s=30, rps=rps)
    raw = tool.collect(ctx)
    return json.loads(raw), tool.parse(raw, ctx)


def identities(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule_id, str(next(iter(f.identity.values())))) for f in findings}


def test_http_server_missing_headers_and_cookie_flags() -> None:
    with HttpServer({"/": INSECURE_PAGE}) as server:
        observed, findings = fetch(Target(ip="127.0.0.1", url=server.url()))
    assert identities(findings) == {
        ("missing-csp", "content-security-policy"),
        ("missing-x-content-type-options", "x-content-type-options"),
        ("missing-frame-protection", "x-frame-options"),
        ("cookie-missing-httponly", "session"),
        ("cookie-missing-samesite", "session"),
    }
    assert {f.asset.url for f in findings} == {server.url()}
    assert observed["status"] == 200
    assert b"0123456789abcdef" not in json.dumps(observed).encode()
    assert b"tok_9f8e7d" not in json.dumps(observed).encode()
    assert "tok_9f8e7d" not in (findings[0].evidence[0].content or "")


def test_https_server_with_a_bad_certificate_is_still_checked() -> None:
    now = datetime.now(UTC)
    expired = issue(
        "expired.test", valid_from=now - timedelta(days=9), valid_until=now - timedelta(days=2)
    )
    with HttpServer({"/": INSECURE_PAGE}, tls=expired) as server:
        _, findings = fetch(Target(ip="127.0.0.1", url=server.url()))
    assert identities(findings) == {
        ("missing-hsts", "strict-transport-security"),
        ("missing-csp", "content-security-policy"),
        ("missing-x-content-type-options", "x-content-type-options"),
        ("missing-frame-protection", "x-frame-options"),
        ("cookie-missing-secure", "session"),
        ("cookie-missing-httponly", "session"),
        ("cookie-missing-samesite", "session"),
    }


def test_redirects_on_the_same_host_are_followed_each_request_paced(
    recording_pacer: Callable[[str], list[RecordingPacer]],
) -> None:
    pacers = recording_pacer("workers.tools.http_headers")
    pages = {
        "/": Page(status=302, headers=[("Location", "/next")]),
        "/next": Page(status=301, headers=[("Location", "/final?x=1")]),
        "/final": Page(headers=[("X-Content-Type-Options", "nosniff")]),
    }
    with HttpServer(pages) as server:
        observed, findings = fetch(Target(ip="127.0.0.1", url=server.url()), rps=20.0)
        assert server.requests == ["/", "/next", "/final?x=1"]
    [pacer] = pacers
    assert (pacer.rps, pacer.reservations) == (20.0, 3)
    assert observed["final_url"] == server.url("/final?x=1")
    assert {f.asset.url for f in findings} == {server.url("/final?x=1")}
    assert "missing-x-content-type-options" not in {f.rule_id for f in findings}


def test_redirects_to_another_host_are_not_followed() -> None:
    with HttpServer({"/": Page()}) as elsewhere:
        offsite = elsewhere.url("/", host="localhost")
        with HttpServer({"/": Page(status=302, headers=[("Location", offsite)])}) as server:
            observed, findings = fetch(Target(ip="127.0.0.1", url=server.url()))
        assert elsewhere.requests == []
    assert observed["redirect_refused"] == offsite
    assert {f.attributes["status"] for f in findings} == {302}


def test_requests_go_to_the_resolved_ip_with_the_url_host_as_host_header() -> None:
    """The worker resolved and checked target.ip; the tool must not resolve the name again."""
    with HttpServer({"/": Page()}) as server:
        target = Target(ip="127.0.0.1", url=server.url(host="unresolvable.invalid"))
        observed, findings = fetch(target)
    assert observed["status"] == 200
    assert {f.asset.host for f in findings} == {"unresolvable.invalid"}
    assert {f.asset.ip for f in findings} == {"127.0.0.1"}


def test_connection_refused_is_a_tool_error_with_the_reason() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(ToolError, match=r"could not fetch .*refused"):
        fetch(Target(ip="127.0.0.1", url=url))


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "http:///x"]
)
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ToolError, match="refused"):
        fetch(Target(ip="127.0.0.1", url=url))


@pytest.mark.parametrize(
    "location", ["http://-oops/", "http://127.0.0.1:99999/", "javascript:alert(1)", "file:///x"]
)
def test_unusable_redirect_locations_are_recorded_not_followed(location: str) -> None:
    with HttpServer({"/": Page(status=302, headers=[("Location", location)])}) as server:
        observed, _ = fetch(Target(ip="127.0.0.1", url=server.url()))
        assert server.requests == ["/"]
    assert observed["redirect_refused"] == location
