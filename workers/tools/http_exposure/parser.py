"""http-exposure observations (JSON) to ``web.exposure`` findings: sensitive files and
endpoints a web server hands out.

Pure: bytes in, findings out. A probe becomes a finding only when

* it was answered 200 (or 206),
* the answer does not look like the answer to a path that cannot exist (the baseline: a
  site that answers every path with the same page, a "soft 404", reports nothing), and
* its body passes the probe's content check (:mod:`workers.tools.http_exposure.paths`).

Bodies are redacted again here (:func:`~workers.tools.redaction.redact_text`, with the
probe's mode) before they are checked or become evidence, so a secret that reached the raw
output unredacted still never reaches a finding. The identity of a finding is its rule and
probe path on the target's base URL, never the (volatile) body.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from contracts.enums import EvidenceType, FindingKind
from contracts.finding import Asset, Evidence, Finding
from workers.tools.base import Target, ToolError
from workers.tools.http_exposure.paths import PROBES_BY_PATH, Body, Probe
from workers.tools.observation import read_observation
from workers.tools.redaction import BodySecrets, redact, redact_text
from workers.tools.web_asset import web_asset

#: How much of a body a finding's evidence shows.
EVIDENCE_BYTES = 1024
#: Bodies at least this similar to the baseline's (0..1) are the site's catch-all page.
SOFT_404_SIMILARITY = 0.9
_FOUND = frozenset({200, 206})


class ProbeResponse(BaseModel):
    """One probe: the request's path and URL, and the (last) response to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The probe's path relative to the base URL ("/.git/HEAD"), or the baseline's.
    path: str
    #: The URL requested first.
    url: str
    #: Same-host redirects followed, in order (query strings redacted).
    redirects: list[str] = Field(default_factory=list)
    #: A redirect that was not followed (another host, or too many).
    redirect_refused: str | None = None
    status: Annotated[int, Field(ge=100, le=999)] | None = None
    reason: str = ""
    http_version: str = "HTTP/1.1"
    #: A few response headers (content type and length, server, location...), redacted.
    headers: list[tuple[str, str]] = Field(default_factory=list)
    #: The start of the body: redacted text, or the first bytes of a binary body in base64.
    body: str = ""
    body_encoding: Literal["text", "base64"] = "text"
    #: Bytes of the body read (reading stops at a cap).
    body_bytes: Annotated[int, Field(ge=0)] = 0
    #: Whether the whole body was read.
    body_complete: bool = True
    elapsed_ms: Annotated[float, Field(ge=0)] = 0.0
    at: datetime
    #: Why there is no response (timeout, reset...).
    error: str | None = None


class ExposureScan(BaseModel):
    """What one http-exposure run observed: the raw output of the check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: Literal["http-exposure"] = "http-exposure"
    #: The URL the task asked for.
    url: str
    #: The directory of that URL's path, which probe paths are relative to.
    base_url: str
    #: The IP address requests went to.
    ip: str | None = None
    #: Requests sent, redirects and the baseline included.
    requests: Annotated[int, Field(ge=0)] = 0
    #: The answer to a random path that cannot exist.
    baseline: ProbeResponse
    probes: list[ProbeResponse]


def parse(raw: bytes, target: Target) -> list[Finding]:
    scan = read_observation(ExposureScan, raw, "http-exposure")
    asset = web_asset(scan.base_url, scan.ip, target, tool="http-exposure", field="base_url")
    baseline = _Seen(scan.baseline, BodySecrets.GENERIC)
    findings = []
    for response in scan.probes:
        probe = PROBES_BY_PATH.get(response.path)
        if probe is None or response.error is not None or response.status not in _FOUND:
            continue
        seen = _Seen(response, probe.secrets)
        if seen.looks_like(baseline) or not probe.check(seen.body):
            continue
        findings.append(_finding(probe, seen, asset))
    return findings


def body_of(response: ProbeResponse, secrets: BodySecrets) -> Body:
    """The body as checks see it: redacted text, or the decoded bytes of a binary body."""
    if response.body_encoding == "base64":
        try:
            return Body(text="", data=base64.b64decode(response.body, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ToolError(f"http-exposure output has a bad base64 body: {exc}") from exc
    return Body(text=redact_text(response.body, secrets))


class _Seen:
    """A response with its body ready for checks and comparison."""

    def __init__(self, response: ProbeResponse, secrets: BodySecrets) -> None:
        self.response = response
        self.body = body_of(response, secrets)

    @property
    def final_url(self) -> str:
        return self.response.redirects[-1] if self.response.redirects else self.response.url

    def _comparable(self) -> str | bytes:
        """The body without the paths requested (catch-all pages often echo them)."""
        if self.body.binary:
            return self.body.data
        text = self.body.text
        for url in (self.response.url, *self.response.redirects):
            path = urlsplit(url).path
            if len(path) > 1:
                text = text.replace(path, "")
        return text

    def looks_like(self, other: _Seen) -> bool:
        """Same status and a similar body: the site's answer to any path."""
        if self.response.status != other.response.status:
            return False
        mine, theirs = self._comparable(), other._comparable()
        if isinstance(mine, bytes) or isinstance(theirs, bytes):
            return mine == theirs
        if mine == theirs:
            return True
        matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
        return (
            matcher.real_quick_ratio() >= SOFT_404_SIMILARITY
            and matcher.quick_ratio() >= SOFT_404_SIMILARITY
            and matcher.ratio() >= SOFT_404_SIMILARITY
        )


def _evidence(seen: _Seen) -> Evidence:
    response = seen.response
    head = f"{response.http_version} {response.status} {response.reason}".rstrip() + "\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in redact(response.headers))
    if seen.body.binary:
        shown = base64.b64encode(seen.body.data).decode()
        body = f"[binary body, {response.body_bytes} bytes read; first bytes in base64: {shown}]"
    else:
        body = seen.body.text.encode()[:EVIDENCE_BYTES].decode("utf-8", errors="ignore")
    return Evidence(
        type=EvidenceType.HTTP_RESPONSE,
        label=f"response to GET {seen.final_url}",
        content=f"{head}\r\n{body}",
        media_type="message/http",
    )


def _finding(probe: Probe, seen: _Seen, asset: Asset) -> Finding:
    response = seen.response
    content_type = next(
        (value for name, value in response.headers if name.lower() == "content-type"), None
    )
    attributes: dict[str, object] = {"status": response.status, "url": seen.final_url}
    if content_type is not None:
        attributes["content_type"] = content_type
    return Finding(
        kind=FindingKind.WEB_EXPOSURE,
        rule_id=probe.rule_id,
        title=probe.title,
        severity=probe.severity,
        confidence=probe.confidence,
        asset=asset,
        identity={"path": probe.path},
        attributes=attributes,
        description=f"GET {seen.final_url} answered {response.status} with {probe.confirms}.",
        evidence=[_evidence(seen)],
        remediation=probe.kind.remediation,
        references=[probe.kind.reference],
        cwe=[probe.kind.cwe],
    )
