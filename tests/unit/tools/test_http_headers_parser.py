"""The http-headers parser on real recorded responses: which headers and cookie flags are
reported, and that secrets never reach the evidence."""

from __future__ import annotations

import json

import pytest

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity
from contracts.finding import Finding
from tests.fixtures.tools.record import load_case
from workers.tools.base import Target, ToolError
from workers.tools.http_headers.parser import csp_weaknesses, parse
from workers.tools.redaction import REDACTED, redact


def rules(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.rule_id, str(next(iter(f.identity.values())))) for f in findings}


def test_plain_http_response_without_security_headers() -> None:
    raw, target, _ = load_case("http_headers", "bare-http")
    findings = parse(raw, target)
    assert rules(findings) == {
        ("missing-csp", "content-security-policy"),
        ("missing-x-content-type-options", "x-content-type-options"),
        ("missing-frame-protection", "x-frame-options"),
        ("cookie-missing-httponly", "session"),
        ("cookie-missing-samesite", "session"),
    }
    # Over plain HTTP neither HSTS nor the Secure flag is asked for.
    assert not {f.rule_id for f in findings} & {"missing-hsts", "cookie-missing-secure"}


def test_findings_are_high_confidence_web_exposures_on_the_url() -> None:
    raw, target, _ = load_case("http_headers", "bare-http")
    for finding in parse(raw, target):
        assert finding.kind is FindingKind.WEB_EXPOSURE
        assert finding.confidence is Confidence.HIGH
        assert finding.asset.url == target.url
        assert finding.asset.ip == "127.0.0.1"
        assert finding.attributes["status"] == 200
        assert finding.severity in (Severity.LOW, Severity.MEDIUM)


def test_hardened_https_response_gives_no_findings() -> None:
    raw, target, _ = load_case("http_headers", "hardened-https")
    assert parse(raw, target) == []


def test_same_host_redirect_is_followed_and_the_final_response_judged() -> None:
    raw, target, _ = load_case("http_headers", "weak-https-redirect")
    findings = parse(raw, target)
    assert rules(findings) == {
        ("weak-csp", "content-security-policy"),
        ("cookie-missing-secure", "sid"),
    }
    weak = next(f for f in findings if f.rule_id == "weak-csp")
    assert weak.severity is Severity.INFO
    assert weak.attributes["weaknesses"] == ["'unsafe-inline'", "default-src *"]
    assert {f.asset.url for f in findings} == {str(target.url) + "app"}
    assert {f.asset.host for f in findings} == {"localhost"}
    assert next(f for f in findings if f.rule_id == "cookie-missing-secure").severity is (
        Severity.MEDIUM
    )


def test_response_to_an_offsite_redirect_is_judged_as_is() -> None:
    raw, target, _ = load_case("http_headers", "offsite-redirect")
    assert json.loads(raw)["redirect_refused"] == "http://www.example.invalid/"
    findings = parse(raw, target)
    assert {f.attributes["status"] for f in findings} == {301}
    assert {f.asset.url for f in findings} == {target.url}


def test_missing_hsts_is_reported_on_https_only() -> None:
    raw, target, _ = load_case("http_headers", "hardened-https")
    document = json.loads(raw)
    document["headers"] = [h for h in document["headers"] if h[0] != "Strict-Transport-Security"]
    [finding] = parse(json.dumps(document).encode(), target)
    assert (finding.rule_id, finding.identity) == (
        "missing-hsts",
        {"header": "strict-transport-security"},
    )
    assert finding.severity is Severity.MEDIUM


def test_evidence_holds_the_status_line_and_redacted_headers() -> None:
    raw, target, _ = load_case("http_headers", "bare-http")
    evidence = parse(raw, target)[0].evidence
    assert [e.type for e in evidence] == [EvidenceType.HTTP_RESPONSE]
    content = evidence[0].content or ""
    assert content.startswith("HTTP/1.1 200 OK\r\n")
    assert "Set-Cookie: session=[REDACTED]; Path=/\r\n" in content
    assert "Set-Cookie: theme=[REDACTED]; Path=/; HttpOnly; SameSite=Lax\r\n" in content
    assert "X-Auth-Token: [REDACTED]\r\n" in content
    assert "8f2c0a1e77d94b2e" not in content
    assert "tok_live" not in content


def test_recorded_raw_output_is_already_redacted() -> None:
    for case in ("bare-http", "weak-https-redirect", "hardened-https"):
        raw, _, _ = load_case("http_headers", case)
        for secret in (b"8f2c0a1e", b"tok_live", b"eyJhbGci", b"0cc175b9", b"41d8cd98"):
            assert secret not in raw


def test_secrets_that_reach_the_parser_unredacted_are_redacted_in_evidence() -> None:
    raw, target, _ = load_case("http_headers", "bare-http")
    document = json.loads(raw)
    document["headers"] += [
        ["Set-Cookie", "leak=s3cr3t-value; Secure"],
        ["Authorization", "Basic dXNlcjpwYXNz"],
        ["X-Client-Secret", "hunter2"],
    ]
    findings = parse(json.dumps(document).encode(), target)
    content = findings[0].evidence[0].content or ""
    for secret in ("s3cr3t-value", "dXNlcjpwYXNz", "hunter2"):
        assert secret not in content
    assert "Set-Cookie: leak=[REDACTED]; Secure" in content


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("Set-Cookie", "a=b; HttpOnly", f"a={REDACTED}; HttpOnly"),
        ("set-cookie", "novalue", REDACTED),
        ("Authorization", "Bearer x", REDACTED),
        ("Proxy-Authorization", "Basic x", REDACTED),
        ("Cookie", "a=b", REDACTED),
        ("X-CSRF-Token", "abc", REDACTED),
        ("X-Upstream-Secret", "abc", REDACTED),
        ("Content-Type", "text/html", "text/html"),
        ("WWW-Authenticate", 'Basic realm="x"', 'Basic realm="x"'),
    ],
)
def test_redaction(header: str, value: str, expected: str) -> None:
    assert redact([(header, value)]) == [(header, expected)]


@pytest.mark.parametrize(
    ("policy", "weaknesses"),
    [
        ("default-src 'self'", []),
        ("default-src 'self'; script-src 'unsafe-inline'", ["'unsafe-inline'"]),
        ("script-src 'self' 'UNSAFE-EVAL'", ["'unsafe-eval'"]),
        ("default-src *", ["default-src *"]),
        ("default-src https://*.example.com", []),
        ("img-src *; default-src 'none'", []),
    ],
)
def test_csp_weaknesses(policy: str, weaknesses: list[str]) -> None:
    assert csp_weaknesses(policy) == weaknesses


def _with_headers(headers: list[list[str]]) -> list[str]:
    raw, target, _ = load_case("http_headers", "hardened-https")
    document = json.loads(raw)
    document["headers"] = headers
    return sorted(f.rule_id for f in parse(json.dumps(document).encode(), target))


def test_frame_protection_by_x_frame_options_or_frame_ancestors() -> None:
    base = [
        ["Strict-Transport-Security", "max-age=1"],
        ["Content-Security-Policy", "default-src 'self'"],
        ["X-Content-Type-Options", "nosniff"],
    ]
    assert _with_headers(base) == ["missing-frame-protection"]
    assert _with_headers([*base, ["X-Frame-Options", "deny"]]) == []
    assert _with_headers([*base, ["X-Frame-Options", "ALLOW-FROM https://a"]]) == [
        "missing-frame-protection"
    ]
    assert _with_headers([*base, ["Content-Security-Policy", "frame-ancestors 'self'"]]) == []


def test_report_only_csp_and_a_wrong_nosniff_value_do_not_count() -> None:
    headers = [
        ["Strict-Transport-Security", "max-age=1"],
        ["Content-Security-Policy-Report-Only", "default-src 'self'; frame-ancestors 'none'"],
        ["X-Content-Type-Options", "sniff-away"],
        ["X-Frame-Options", "DENY"],
    ]
    assert _with_headers(headers) == ["missing-csp", "missing-x-content-type-options"]


def test_each_cookie_is_reported_once_per_missing_flag() -> None:
    headers = [
        ["Strict-Transport-Security", "max-age=1"],
        ["Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"],
        ["X-Content-Type-Options", "nosniff"],
        ["Set-Cookie", f"a={REDACTED}"],
        ["Set-Cookie", f"a={REDACTED}"],
        ["Set-Cookie", f"b={REDACTED}; secure; httponly; samesite=None"],
    ]
    assert _with_headers(headers) == [
        "cookie-missing-httponly",
        "cookie-missing-samesite",
        "cookie-missing-secure",
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"<html>", "not valid"),
        (b'{"url": "http://x/"}', "final_url"),
        (
            b'{"url": "ftp://x/", "final_url": "ftp://x/", "status": 200, "headers": []}',
            "unusable final_url",
        ),
        (
            b'{"url": "http://x/", "final_url": "http://x/", "status": 42, "headers": []}',
            "status",
        ),
        (
            b'{"url": "http://x/", "final_url": "http://x/", "status": 200, "headers": [["a"]]}',
            "headers",
        ),
    ],
)
def test_malformed_output_is_a_tool_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ToolError, match=reason):
        parse(raw, Target(url="http://x/"))
