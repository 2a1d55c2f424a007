"""http-headers: a built-in check of the security headers and cookie flags of a URL.

One GET with the standard library's http.client. HTTPS certificates are not verified
here (that is tls-cert's job). Redirects are followed only while they stay on the
target's host (at most :data:`MAX_REDIRECTS`), and every request goes to the address the
worker resolved and checked (``target.ip``), never to a fresh DNS answer. Requests are
paced to ``ctx.rps`` per second and bounded by ``ctx.time_limit_s`` together.
"""

from __future__ import annotations

import http.client
import time
from typing import ClassVar
from urllib.parse import SplitResult, urljoin, urlsplit

from contracts.finding import Finding
from workers.tools.address import is_ip
from workers.tools.base import RunContext, ToolError
from workers.tools.builtin import BuiltinCheck
from workers.tools.http_headers import parser
from workers.tools.http_headers.parser import HeaderFetch
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
from workers.tools.redaction import redact

MAX_REDIRECTS = 5
_REQUEST_TIMEOUT_S = 10.0


class HttpHeadersTool(BuiltinCheck):
    name: ClassVar[str] = "http-headers"
    pool: ClassVar[str] = "web"
    target_kind: ClassVar[str] = "url"
    default_time_limit_s: ClassVar[int] = 60

    def collect(self, ctx: RunContext) -> bytes:
        url = checked_url(ctx.target, self.name)
        connect_to = connect_address(ctx.target, url)
        pacer = Pacer(ctx.rps)
        deadline = time.monotonic() + ctx.time_limit_s
        current, refused = url, None
        redirects: list[str] = []
        while True:
            pacer.wait()
            response = _fetch(current, connect_to, deadline, self.version())
            location = response.getheader("location")
            if response.status not in REDIRECT_STATUSES or not location:
                break
            following = urljoin(current.geturl(), location.strip())
            next_url = urlsplit(following)
            if not same_host(next_url, url):
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


def _fetch(
    url: SplitResult, connect_to: str, deadline: float, version: str
) -> http.client.HTTPResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ToolError(f"http-headers ran out of time before fetching {url.geturl()}")
    conn = connection(url, connect_to, timeout=min(_REQUEST_TIMEOUT_S, remaining))
    try:
        conn.request(
            "GET",
            request_path(url),
            headers={
                "Host": host_header(url),
                "User-Agent": f"scanfleet-http-headers/{version}",
                "Accept": "*/*",
                "Connection": "close",
            },
        )
        response = conn.getresponse()
        response.close()  # only the head matters; never read the body
    except REQUEST_ERRORS as exc:
        raise ToolError(f"http-headers could not fetch {url.geturl()}: {exc}") from exc
    finally:
        conn.close()
    return response
