"""http-exposure: a built-in check for sensitive files and endpoints a web server exposes.

It requests each path of :data:`~workers.tools.http_exposure.paths.PROBES` (``/.git/HEAD``,
``/.env``, backups, debug endpoints, directory listings...) relative to the base of the
target URL (the directory of its path), after one random path that cannot exist (the
baseline the parser compares answers with, to ignore sites that answer 200 to anything).

Requests: GET with the standard library's http.client over one kept-alive connection
(reopened when a server closes it or a body is too large to drain), always to the address
the worker resolved and checked (``target.ip``) with the URL's host in ``Host`` and SNI
(:mod:`workers.tools.pinned_http`). Each request, redirects included, takes a slot of the
task's :class:`~workers.tools.pacing.Pacer` (``ctx.rps`` per second) and has a timeout.
Redirects are followed only on the target's host (at most :data:`MAX_REDIRECTS`).

The run stops at once when ``ctx.cancel`` is set (even while waiting for a slot), and
rather than start a request with less than :data:`MIN_REQUEST_TIME_S` of
``ctx.time_limit_s`` left (each request's timeout is capped by the time left); either
way it fails (:class:`ToolError`) rather than report a
partial list, which would read as exposures fixed. A run whose requests cannot fit the
time limit at ``ctx.rps`` is refused up front.

Only the start of each body is kept (:data:`TEXT_BYTES` of text, redacted, or
:data:`BINARY_BYTES` of a binary body: its file signature, not its content).
"""

from __future__ import annotations

import base64
import http.client
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Literal
from urllib.parse import SplitResult, urljoin, urlsplit

from contracts.finding import Finding
from workers.tools.address import is_ip
from workers.tools.base import RunContext, ToolError
from workers.tools.builtin import BuiltinCheck
from workers.tools.http_exposure import parser
from workers.tools.http_exposure.parser import ExposureScan, ProbeResponse
from workers.tools.http_exposure.paths import PROBES
from workers.tools.pacing import Pacer
from workers.tools.pinned_http import (
    REDIRECT_STATUSES,
    REQUEST_ERRORS,
    checked_url,
    connect_address,
    connection,
    host_header,
    request_path,
    same_host,
)
from workers.tools.redaction import REDACTED, BodySecrets, redact, redact_text

MAX_REDIRECTS = 3
#: Bytes of a body read at most; a longer body is not drained (its connection is closed).
READ_BYTES = 64 * 1024
#: Bytes of a text body kept (redacted) in the output.
TEXT_BYTES = 4096
#: Bytes of a binary body kept in the output: enough for a file signature, no content.
BINARY_BYTES = 16
REQUEST_TIMEOUT_S = 10.0
#: A request is not started with less time than this left before the time limit.
MIN_REQUEST_TIME_S = 1.0
#: Consecutive failed probes after which the target counts as gone.
MAX_CONSECUTIVE_ERRORS = 3
#: Response headers kept in the output.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-disposition",
        "content-range",
        "last-modified",
        "location",
        "server",
        "x-powered-by",
        "www-authenticate",
    }
)


class HttpExposureTool(BuiltinCheck):
    name: ClassVar[str] = "http-exposure"
    pool: ClassVar[str] = "web"
    target_kind: ClassVar[str] = "url"
    default_time_limit_s: ClassVar[int] = 300

    def collect(self, ctx: RunContext) -> bytes:
        url = checked_url(ctx.target, self.name)
        connect_to = connect_address(ctx.target, url)
        base = base_of(url)
        planned = len(PROBES) + 1
        if ctx.rps is not None and (planned - 1) / ctx.rps >= ctx.time_limit_s:
            raise ToolError(
                f"http-exposure needs {planned} requests, more than {ctx.time_limit_s:g} s "
                f"allows at {ctx.rps:g} per second"
            )
        client = _Client(ctx, url, connect_to, f"scanfleet-http-exposure/{self.version()}")
        try:
            baseline = client.probe(f"/scanfleet-{secrets.token_hex(12)}", BodySecrets.GENERIC)
            if baseline.error is not None:
                raise ToolError(f"http-exposure could not reach {url.geturl()}: {baseline.error}")
            probes: list[ProbeResponse] = []
            failures = 0
            for probe in PROBES:
                response = client.probe(probe.path, probe.secrets)
                probes.append(response)
                failures = failures + 1 if response.error is not None else 0
                if failures == MAX_CONSECUTIVE_ERRORS:
                    raise ToolError(
                        f"http-exposure: {failures} probes of {url.geturl()} failed in a row, "
                        f"the last with: {response.error}"
                    )
        except _Stopped as stop:
            raise ToolError(
                f"http-exposure stopped after {client.requests} requests: {stop}"
            ) from None
        finally:
            client.close()
        scan = ExposureScan(
            url=url.geturl(),
            base_url=base.geturl(),
            ip=connect_to if is_ip(connect_to) else None,
            requests=client.requests,
            baseline=baseline,
            probes=probes,
        )
        return scan.model_dump_json().encode()

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        return parser.parse(raw, ctx.target)


def base_of(url: SplitResult) -> SplitResult:
    """The directory of the URL's path, without query or fragment: where probes start."""
    path = url.path or "/"
    return url._replace(path=path[: path.rindex("/") + 1], query="", fragment="")


class _Stopped(Exception):
    """Cancelled, or out of time."""


@dataclass
class _Fetched:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool
    #: Seconds from sending the request to the end of the body read.
    elapsed: float


class _Client:
    """Paced GET requests to the pinned address, one kept-alive connection per origin."""

    def __init__(self, ctx: RunContext, url: SplitResult, connect_to: str, agent: str) -> None:
        self._ctx = ctx
        self._url = url
        self._base = base_of(url)
        self._connect_to = connect_to
        self._agent = agent
        self._pacer = Pacer(ctx.rps)
        self._deadline = time.monotonic() + ctx.time_limit_s
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self.requests = 0
        #: When the current request started (monotonic, and wall clock).
        self._started, self._started_at = time.monotonic(), datetime.now(UTC)

    def probe(self, path: str, body_secrets: BodySecrets) -> ProbeResponse:
        """GET ``path`` (relative to the base URL), following same-host redirects."""
        first = self._base._replace(path=self._base.path + path.lstrip("/"))
        current = first
        redirects: list[str] = []
        refused = None
        elapsed = 0.0  # seconds spent in requests, pacing waits left out
        sent: datetime | None = None  # when the first request was sent
        while True:
            try:
                fetched = self._get(current)
            except REQUEST_ERRORS as exc:
                return ProbeResponse(
                    path=path,
                    url=first.geturl(),
                    redirects=redirects,
                    at=sent or self._started_at,
                    elapsed_ms=_ms(elapsed + time.monotonic() - self._started),
                    error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                )
            sent = sent or self._started_at
            elapsed += fetched.elapsed
            location = next((v for n, v in fetched.headers if n.lower() == "location"), None)
            if fetched.status not in REDIRECT_STATUSES or not location:
                break
            following = urljoin(current.geturl(), location.strip())
            next_url = urlsplit(following)
            if not same_host(next_url, self._url) or len(redirects) == MAX_REDIRECTS:
                refused = _without_query(following)
                break
            redirects.append(_without_query(following))
            current = next_url
        body, encoding = _kept_body(fetched.body, body_secrets)
        return ProbeResponse(
            path=path,
            url=first.geturl(),
            redirects=redirects,
            redirect_refused=refused,
            status=fetched.status,
            reason=fetched.reason,
            http_version=fetched.version,
            headers=redact([(n, v) for n, v in fetched.headers if n.lower() in KEPT_HEADERS]),
            body=body,
            body_encoding=encoding,
            body_bytes=len(fetched.body),
            body_complete=fetched.complete,
            at=sent or self._started_at,
            elapsed_ms=_ms(elapsed),
        )

    def _wait_for_slot(self) -> float:
        """Wait for the next pacer slot; the time left for the request (or _Stopped)."""
        if self._ctx.cancel.is_set():
            raise _Stopped("cancelled")
        delay = self._pacer.reserve()
        left = self._deadline - time.monotonic() - delay
        if left < MIN_REQUEST_TIME_S:
            raise _Stopped(f"the time limit of {self._ctx.time_limit_s:g} s is near")
        if delay > 0 and self._ctx.cancel.wait(delay):
            raise _Stopped("cancelled")
        return left

    def _get(self, url: SplitResult) -> _Fetched:
        timeout = min(REQUEST_TIMEOUT_S, self._wait_for_slot())
        self._started, self._started_at = time.monotonic(), datetime.now(UTC)
        key = (url.scheme, str(url.port))
        conn = self._connections.get(key)
        if conn is None:
            conn = self._connections[key] = connection(url, self._connect_to, timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        self.requests += 1
        try:
            conn.request(
                "GET",
                request_path(url),
                headers={
                    "Host": host_header(url),
                    "User-Agent": self._agent,
                    "Accept": "*/*",
                    "Accept-Encoding": "identity",
                },
            )
            response = conn.getresponse()
            body, complete = _read(response, time.monotonic() + timeout)
        except BaseException:
            conn.close()
            del self._connections[key]
            raise
        if not complete:
            conn.close()  # the rest of the body is not wanted: do not drain it
        return _Fetched(
            status=response.status,
            reason=response.reason or "",
            version="HTTP/1.0" if response.version == 10 else "HTTP/1.1",
            headers=response.getheaders(),
            body=body,
            complete=complete,
            elapsed=time.monotonic() - self._started,
        )

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


def _read(response: http.client.HTTPResponse, deadline: float) -> tuple[bytes, bool]:
    """Up to :data:`READ_BYTES` of the body, within the request's time; (body, complete)."""
    chunks: list[bytes] = []
    size = 0
    while size < READ_BYTES and not response.isclosed() and time.monotonic() < deadline:
        chunk = response.read(min(16384, READ_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), response.isclosed()


def _kept_body(data: bytes, body_secrets: BodySecrets) -> tuple[str, Literal["text", "base64"]]:
    """What the output keeps of a body: redacted text, or a binary body's first bytes."""
    if b"\x00" in data[:TEXT_BYTES]:
        return base64.b64encode(data[:BINARY_BYTES]).decode(), "base64"
    return redact_text(data[:TEXT_BYTES].decode("utf-8", errors="replace"), body_secrets), "text"


def _without_query(url: str) -> str:
    head, query, _ = url.partition("?")
    return f"{head}?{REDACTED}" if query else head


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
