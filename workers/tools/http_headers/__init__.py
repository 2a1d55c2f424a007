"""http-headers: a built-in check of the security headers and cookie flags of a URL.

One GET with the standard library's http.client. HTTPS certificates are not verified
here (that is tls-cert's job). Redirects are followed only while they stay on the
target's host (at most :data:`MAX_REDIRECTS`), and every request goes to the address the
worker resolved and checked (``target.ip``), never to a fresh DNS answer. Requests are
paced to ``ctx.rps`` per second and bounded by ``ctx.time_limit_s`` together.
"""

from __future__ import annotations

import http.client
import ssl
import time
from typing import ClassVar
from urllib.parse import SplitResult, urljoin, urlsplit

from contracts.finding import Finding
from workers.tools.address import checked_address, checked_host_name, is_ip
from workers.tools.base import RunContext, Target, Tool, ToolError
from workers.tools.builtin import builtin_version
from workers.tools.http_headers import parser
from workers.tools.http_headers.parser import HeaderFetch, redact
from workers.tools.pacing import Pacer

MAX_REDIRECTS = 5
_REQUEST_TIMEOUT_S = 10.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class HttpHeadersTool(Tool):
    name: ClassVar[str] = "http-headers"
    pool: ClassVar[str] = "web"
    target_kind: ClassVar[str] = "url"
    default_time_limit_s: ClassVar[int] = 60

    def version(self) -> str:
        return builtin_version()

    def collect(self, ctx: RunContext) -> bytes:
        url = _checked_url(ctx.target)
        connect_to = checked_address(ctx.target) if ctx.target.ip else _url_host(url)
        pacer = Pacer(ctx.rps)
        deadline = time.monotonic() + ctx.time_limit_s
        current, refused = url, None
        redirects: list[str] = []
        while True:
            pacer.wait()
            response = _fetch(current, connect_to, deadline, self.version())
            location = response.getheader("location")
            if response.status not in _REDIRECT_STATUSES or not location:
                break
            following = urljoin(current.geturl(), location.strip())
            next_url = urlsplit(following)
            if not _same_host(next_url, url):
                refused = following
                break
            if len(redirects) == MAX_REDIRECTS:
                refused = f"{following} (more than {MAX_REDIRECTS} redirects)"
                break
            redirects.append(following)
            current = next_url
        fetch = HeaderFetch(
            url=url.geturl(),
            final_url=current.geturl(),
            redirects=redirects,
            redirect_refused=refused,
            ip=connect_to if is_ip(connect_to) else None,
            http_version="HTTP/1.0" if response.version == 10 else "HTTP/1.1",
            status=response.status,
            reason=response.reason or "",
            headers=redact(response.getheaders()),
        )
        return fetch.model_dump_json().encode()

    def parse(self, raw: bytes, ctx: RunContext) -> list[Finding]:
        return parser.parse(raw, ctx.target)


def _checked_url(target: Target) -> SplitResult:
    if not target.url:
        raise ToolError("http-headers needs a URL target")
    url = urlsplit(target.url.strip())
    if url.scheme not in ("http", "https"):
        raise ToolError(f"refused target URL {target.url!r}: only http and https are scanned")
    if url.username is not None or url.password is not None:
        raise ToolError("refused target URL: it carries credentials")
    try:
        url.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ToolError(f"refused target URL {target.url!r}: {exc}") from exc
    _url_host(url)
    return url


def _url_host(url: SplitResult) -> str:
    host = (url.hostname or "").rstrip(".").lower()
    if not host:
        raise ToolError(f"refused URL {url.geturl()!r}: it has no host")
    return host if is_ip(host) else checked_host_name(host)


def _same_host(candidate: SplitResult, target: SplitResult) -> bool:
    """Whether a redirect stays on the target's host (any port, http or https)."""
    if candidate.scheme not in ("http", "https"):
        return False
    try:
        candidate.port  # noqa: B018 (raises ValueError for a bad port)
        return _url_host(candidate) == _url_host(target)
    except (ValueError, ToolError):
        return False


class _TLSConnection(http.client.HTTPConnection):
    """HTTPS to a pinned address, SNI set to the URL's host name, certificate not checked."""

    default_port = 443

    def __init__(self, address: str, port: int, *, sni: str | None, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout)
        self._sni = sni

    def connect(self) -> None:
        super().connect()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # tls-cert judges the certificate
        self.sock = context.wrap_socket(self.sock, server_hostname=self._sni)


def _fetch(
    url: SplitResult, connect_to: str, deadline: float, version: str
) -> http.client.HTTPResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ToolError(f"http-headers ran out of time before fetching {url.geturl()}")
    timeout = min(_REQUEST_TIMEOUT_S, remaining)
    host = _url_host(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        sni = None if is_ip(host) else host
        connection = _TLSConnection(connect_to, port, sni=sni, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(connect_to, port, timeout=timeout)
    host_header = f"[{host}]" if ":" in host else host
    if url.port is not None:
        host_header = f"{host_header}:{url.port}"
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    try:
        connection.request(
            "GET",
            path,
            headers={
                "Host": host_header,
                "User-Agent": f"scanfleet-http-headers/{version}",
                "Accept": "*/*",
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        response.close()  # only the head matters; never read the body
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise ToolError(f"http-headers could not fetch {url.geturl()}: {exc}") from exc
    finally:
        connection.close()
    return response
