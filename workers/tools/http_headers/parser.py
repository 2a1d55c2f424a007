"""http-headers observations (JSON) to ``web.exposure`` findings: missing or weak
security headers and cookie flags of one HTTP response.

Pure: bytes in, findings out. Secrets never leave the worker: headers are redacted
(:func:`workers.tools.redaction.redact`) when the response is recorded and again here
before they become evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from contracts.enums import Confidence, EvidenceType, FindingKind, Severity
from contracts.finding import Asset, Evidence, Finding
from workers.tools.base import Target
from workers.tools.observation import read_observation
from workers.tools.redaction import redact
from workers.tools.web_asset import web_asset


class HeaderFetch(BaseModel):
    """What one http-headers run observed: the raw output of the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: Literal["http-headers"] = "http-headers"
    #: The URL the task asked for.
    url: str
    #: The URL whose response is reported (the target's, or a same-host redirect's).
    final_url: str
    #: Same-host redirects that were followed, in order.
    redirects: list[str] = Field(default_factory=list)
    #: A redirect that was not followed (another host, or too many).
    redirect_refused: str | None = None
    #: The IP address the final request went to.
    ip: str | None = None
    http_version: str = "HTTP/1.1"
    status: Annotated[int, Field(ge=100, le=999)]
    reason: str = ""
    #: Response headers in the order received, secrets redacted.
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class _Rule:
    severity: Severity
    title: str
    remediation: str
    cwe: str
    reference: str


_OWASP = "https://cheatsheetseries.owasp.org/cheatsheets/HTTP_Headers_Cheat_Sheet.html"
_COOKIES = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Cookies"
RULES: dict[str, _Rule] = {
    "missing-hsts": _Rule(
        Severity.MEDIUM,
        "Strict-Transport-Security header missing",
        "Send Strict-Transport-Security: max-age=31536000; includeSubDomains on HTTPS.",
        "CWE-319",
        _OWASP,
    ),
    "missing-csp": _Rule(
        Severity.LOW,
        "Content-Security-Policy header missing",
        "Send a Content-Security-Policy that restricts script sources.",
        "CWE-693",
        _OWASP,
    ),
    "weak-csp": _Rule(
        Severity.INFO,
        "Content-Security-Policy allows unsafe sources",
        "Remove 'unsafe-inline', 'unsafe-eval' and wildcard sources from the policy.",
        "CWE-693",
        _OWASP,
    ),
    "missing-x-content-type-options": _Rule(
        Severity.LOW,
        "X-Content-Type-Options: nosniff missing",
        "Send X-Content-Type-Options: nosniff.",
        "CWE-693",
        _OWASP,
    ),
    "missing-frame-protection": _Rule(
        Severity.LOW,
        "No protection against framing (clickjacking)",
        "Send Content-Security-Policy: frame-ancestors 'self' (or X-Frame-Options: DENY).",
        "CWE-1021",
        _OWASP,
    ),
    "cookie-missing-secure": _Rule(
        Severity.MEDIUM,
        "Cookie set without the Secure flag",
        "Set the Secure attribute on cookies sent over HTTPS.",
        "CWE-614",
        _COOKIES,
    ),
    "cookie-missing-httponly": _Rule(
        Severity.LOW,
        "Cookie set without the HttpOnly flag",
        "Set the HttpOnly attribute unless scripts must read the cookie.",
        "CWE-1004",
        _COOKIES,
    ),
    "cookie-missing-samesite": _Rule(
        Severity.LOW,
        "Cookie set without a SameSite attribute",
        "Set SameSite=Lax (or Strict) on the cookie.",
        "CWE-1275",
        _COOKIES,
    ),
}


def parse(raw: bytes, target: Target) -> list[Finding]:
    fetch = read_observation(HeaderFetch, raw, "http-headers")
    return _Response(fetch, target).findings()


def csp_weaknesses(policy: str) -> list[str]:
    """What makes an enforced policy weak: unsafe keywords and a wildcard default-src."""
    weaknesses: list[str] = []
    directives = _csp_directives(policy)
    sources = [token for values in directives.values() for token in values]
    for keyword in ("'unsafe-inline'", "'unsafe-eval'"):
        if keyword in sources:
            weaknesses.append(keyword)
    if "*" in directives.get("default-src", []):
        weaknesses.append("default-src *")
    return weaknesses


def _csp_directives(policy: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        tokens = part.split()
        if tokens:
            # The first occurrence of a directive wins (CSP3 §2.2.1).
            directives.setdefault(tokens[0].lower(), [t.lower() for t in tokens[1:]])
    return directives


@dataclass(frozen=True)
class _Cookie:
    name: str
    attributes: frozenset[str]


def _cookie(value: str) -> _Cookie:
    first, _, rest = value.partition(";")
    name = first.partition("=")[0].strip()
    attributes = frozenset(
        part.partition("=")[0].strip().lower() for part in rest.split(";") if part.strip()
    )
    return _Cookie(name=name, attributes=attributes)


class _Response:
    def __init__(self, fetch: HeaderFetch, target: Target) -> None:
        self.fetch = fetch
        self.headers = redact(fetch.headers)
        self.https = urlsplit(fetch.final_url).scheme.lower() == "https"
        self.asset = _asset(fetch, target)
        self.evidence = Evidence(
            type=EvidenceType.HTTP_RESPONSE,
            label=f"response to GET {fetch.final_url}",
            content=self._status_line()
            + "".join(f"{name}: {value}\r\n" for name, value in self.headers),
            media_type="message/http",
        )

    def _status_line(self) -> str:
        return (
            f"{self.fetch.http_version} {self.fetch.status} {self.fetch.reason}".rstrip() + "\r\n"
        )

    def values(self, name: str) -> list[str]:
        return [value for header, value in self.headers if header.lower() == name]

    def findings(self) -> list[Finding]:
        findings = []
        if self.https and not self.values("strict-transport-security"):
            findings.append(self._header_finding("missing-hsts", "strict-transport-security"))
        policies = self.values("content-security-policy")
        if not policies:
            findings.append(self._header_finding("missing-csp", "content-security-policy"))
        weaknesses = [w for policy in policies for w in csp_weaknesses(policy)]
        if weaknesses:
            findings.append(
                self._header_finding(
                    "weak-csp",
                    "content-security-policy",
                    weaknesses=sorted(set(weaknesses)),
                )
            )
        if "nosniff" not in (v.strip().lower() for v in self.values("x-content-type-options")):
            findings.append(
                self._header_finding("missing-x-content-type-options", "x-content-type-options")
            )
        if not self._frame_protected(policies):
            findings.append(self._header_finding("missing-frame-protection", "x-frame-options"))
        findings.extend(self._cookie_findings())
        return findings

    def _frame_protected(self, policies: list[str]) -> bool:
        options = {v.strip().lower() for v in self.values("x-frame-options")}
        if options & {"deny", "sameorigin"}:
            return True
        return any("frame-ancestors" in _csp_directives(policy) for policy in policies)

    def _cookie_findings(self) -> list[Finding]:
        findings: list[Finding] = []
        seen = set()
        for value in self.values("set-cookie"):
            cookie = _cookie(value)
            if not cookie.name or cookie.name in seen:
                continue
            seen.add(cookie.name)
            missing = []
            if self.https and "secure" not in cookie.attributes:
                missing.append("cookie-missing-secure")
            if "httponly" not in cookie.attributes:
                missing.append("cookie-missing-httponly")
            if "samesite" not in cookie.attributes:
                missing.append("cookie-missing-samesite")
            findings.extend(self._finding(rule, {"cookie": cookie.name}) for rule in missing)
        return findings

    def _header_finding(self, rule_id: str, header: str, **extra: object) -> Finding:
        return self._finding(rule_id, {"header": header}, **extra)

    def _finding(self, rule_id: str, identity: dict[str, str], **extra: object) -> Finding:
        rule = RULES[rule_id]
        subject = identity.get("cookie")
        return Finding(
            kind=FindingKind.WEB_EXPOSURE,
            rule_id=rule_id,
            title=f"{rule.title}: {subject}" if subject else rule.title,
            severity=rule.severity,
            confidence=Confidence.HIGH,
            asset=self.asset,
            identity=identity,
            attributes={"status": self.fetch.status, **extra},
            evidence=[self.evidence],
            remediation=rule.remediation,
            references=[rule.reference],
            cwe=[rule.cwe],
        )


def _asset(fetch: HeaderFetch, target: Target) -> Asset:
    return web_asset(fetch.final_url, fetch.ip, target, tool="http-headers", field="final_url")
